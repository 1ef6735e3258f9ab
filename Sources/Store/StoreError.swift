/// The Store's error type under a name other modules can spell (the module and the
/// `Store` class share a name, so `Store.MeshError` would mean a nested type).
public typealias StoreError = MeshError
