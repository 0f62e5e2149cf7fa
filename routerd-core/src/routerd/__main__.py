from routerd.cli import main

main()
