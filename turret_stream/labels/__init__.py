"""Topic labels: readable names for clusters.

``label_topics`` (c-TF-IDF, offline, always available) names every topic at once; an LLM
label, when one is configured and answers, may replace it later.
"""

from turret_stream.labels.fallback import TopicLabel, label_topics

__all__ = ["TopicLabel", "label_topics"]
