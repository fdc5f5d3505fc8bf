from alpha_panda.cli import main

main()
