import Testing
@Test func MeshTestsPlaceholder() {}
