import Testing
@Test func StoreTestsPlaceholder() {}
