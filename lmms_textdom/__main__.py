from lmms_textdom.cli import main

main()
