@testable import MeshSim

/// What the scenario suites share: running one simulation, and its violations on one line.
protocol SimulationSuite {}

extension SimulationSuite {
    /// The first five safety and liveness violations of `r`, for an expectation's message.
    func failures(_ r: SimResult) -> String {
        (r.safetyViolations.map { "safety: \($0)" } + r.livenessViolations.map { "liveness: \($0)" }).prefix(5).joined(separator: "; ")
    }

    func run(_ o: SimOptions) -> (Simulator, SimResult) {
        let sim = Simulator(options: o)
        return (sim, sim.run())
    }
}
