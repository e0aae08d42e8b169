from lampctl.cli import main

main()
