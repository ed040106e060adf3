from anchorgen.cli import main

main()
