import Testing
@Test func GossipTestsPlaceholder() {}
