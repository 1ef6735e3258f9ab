import Testing
@Test func SimulationTestsPlaceholder() {}
