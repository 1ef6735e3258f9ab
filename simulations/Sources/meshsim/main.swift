print("meshsim: not built yet")
