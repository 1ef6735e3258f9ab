import Mesh
import Sync
import Testing

@Suite("The breaker: config key")
struct BreakerConfigTests {
    func parseError(_ yaml: String) -> String? {
        do { _ = try NodeConfig.parse(yaml: yaml, source: "test.yaml"); return nil } catch { return error.message }
    }

    @Test("Defaults are the seeds' (5 failures, 60 s, 3 trials); every key can be set, and bad values name the key")
    func breakerKeysParseAndBadValuesAreNamed() throws {
        #expect(try NodeConfig.parse(yaml: "name: a").breaker == CircuitBreaker.Config(failureThreshold: 5, recoveryTimeoutMs: 60_000, halfOpenRequests: 3))
        let c = try NodeConfig.parse(yaml: "breaker: {failure_threshold: 2, recovery_timeout: 5s, half_open_requests: 1}")
        #expect(c.breaker == CircuitBreaker.Config(failureThreshold: 2, recoveryTimeoutMs: 5000, halfOpenRequests: 1))
        #expect(parseError("breaker: {failure_threshold: 0}") == "breaker.failure_threshold: expected an integer 1-1000, got \"0\"")
        #expect(parseError("breaker: {recovery_timeout: soon}")?.hasPrefix("breaker.recovery_timeout: expected a positive duration") == true)
        #expect(parseError("breaker: {threshold: 3}")?.hasPrefix("breaker.threshold: unknown key") == true)
    }
}
