"""Topic ids stay stable as topics grow, merge and split."""

from turret_stream.clustering.topics import TopicRegistry


def sizes(**kw):
    return {int(k[1:]): v for k, v in kw.items()}


def test_growth_keeps_the_id_and_small_groups_are_no_topic():
    reg = TopicRegistry()
    reg.update([{1, 2}, {9}], {1: 3, 2: 2, 9: 1}, now=0, min_size=3)
    [topic] = reg.members()
    assert reg.members()[topic] == {1, 2} and 9 not in reg.mapping
    reg.update([{1, 2, 3, 4}], {1: 3, 2: 2, 3: 5, 4: 1}, now=1, min_size=3)
    assert reg.members() == {topic: {1, 2, 3, 4}}


def test_merge_keeps_the_larger_predecessor_and_records_the_other():
    reg = TopicRegistry()
    size = {1: 10, 2: 10, 3: 3}
    reg.update([{1, 2}, {3}], size, now=0, min_size=3)
    big, small = reg.mapping[1], reg.mapping[3]
    changes = reg.update([{1, 2, 3}], size, now=5, min_size=3)
    assert reg.members() == {big: {1, 2, 3}}
    assert [(c.kind, c.topic, c.other) for c in changes] == [("merged", small, big)]
    assert reg.current(small) == big and reg.current(big) == big


def test_split_leaves_the_id_with_the_largest_part():
    reg = TopicRegistry()
    size = {1: 10, 2: 10, 3: 4, 4: 4}
    reg.update([{1, 2, 3, 4}], size, now=0, min_size=3)
    [topic] = reg.members()
    changes = reg.update([{1, 2}, {3, 4}], size, now=1, min_size=3)
    assert reg.members()[topic] == {1, 2}
    [split] = changes
    assert split.kind == "split" and split.other == topic
    assert reg.members()[split.topic] == {3, 4}


def test_ids_are_never_reused_or_renumbered():
    reg = TopicRegistry()
    seen = set()
    size = dict.fromkeys(range(20), 5)
    for groups in ([{0, 1}, {2, 3}], [{0, 1, 2, 3}], [{0}, {1}, {2}, {3}], [{5, 6}]):
        before = dict(reg.mapping)
        reg.update(groups, size, now=0, min_size=3)
        new = set(reg.members()) - set(before.values())
        assert not new & seen
        seen |= set(reg.members())
    assert all(t.startswith("tp_") for t in seen)


def test_retired_topic_resolves_to_none():
    reg = TopicRegistry()
    reg.update([{1}], {1: 5}, now=0, min_size=3)
    [topic] = reg.members()
    changes = reg.update([{2}], {1: 5, 2: 5}, now=1, min_size=3)
    assert ("retired", topic) in [(c.kind, c.topic) for c in changes]
    assert reg.current(topic) is None
