from perfspec.cli import main

main()
