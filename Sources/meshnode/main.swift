// The `meshnode` command line. Kept thin: the logic lives in Store (and Mesh).
MeshnodeCommand.main()
