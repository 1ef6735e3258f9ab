print("meshnode: not built yet")
