from turret_stream.cli import main

main()
