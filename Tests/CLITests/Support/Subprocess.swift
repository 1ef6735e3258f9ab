import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The outcome of a finished child process.
struct CommandResult: CustomStringConvertible {
    /// The exit status, or 128 + signal number if it was killed.
    var status: Int32
    var stdout: String
    var stderr: String
    /// The last non-empty line of stdout.
    var lastLine: String { stdout.split(separator: "\n").last.map(String.init) ?? "" }
    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    var description: String { "status \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
}

/// A child process started by a test. It is killed by PID (SIGKILL) and reaped if the
/// test drops it while it still runs, so no test leaves processes behind.
final class ChildProcess {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private(set) var exitStatus: Int32?

    init(pid: pid_t, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    deinit {
        if exitStatus == nil {
            Glibc.kill(pid, SIGKILL)
            var st: Int32 = 0
            _ = waitpid(pid, &st, 0)
        }
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    /// Sends `signal` to this child only.
    func kill(_ signal: Int32 = SIGKILL) {
        if exitStatus == nil { Glibc.kill(pid, signal) }
    }

    /// Reaps the child if it has exited; nil while it runs.
    func poll() -> Int32? {
        if let exitStatus { return exitStatus }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        guard r == pid else { return nil }
        let code: Int32 = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
        exitStatus = code
        return code
    }

    /// Waits up to `timeoutSeconds`; kills the child (and records 128+9) if it is still running then.
    @discardableResult
    func wait(timeoutSeconds: Double) -> Int32 {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if let s = poll() { return s }
            usleep(2_000)
        }
        kill(SIGKILL)
        while poll() == nil { usleep(1_000) }
        return exitStatus!
    }

    var result: CommandResult {
        CommandResult(status: exitStatus ?? -1,
                      stdout: (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")
    }
}

enum Subprocess {
    /// Starts `argv` (searched on PATH) with extra environment, stdout and stderr going to temp files.
    static func spawn(_ argv: [String], environment extra: [String: String] = [:]) throws -> ChildProcess {
        var env = ProcessInfo.processInfo.environment
        for (k, v) in extra { env[k] = v }
        let token = UUID().uuidString.prefix(8)
        let out = "/tmp/meshnode-test-\(getpid())-\(token).out"
        let err = "/tmp/meshnode-test-\(getpid())-\(token).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        // A child inherits the signal mask of the thread that spawns it, and test threads block
        // signals: without this a child could never be stopped with SIGTERM.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cArgs, cEnv)
        guard rc == 0 else {
            throw NSError(domain: "Subprocess", code: Int(rc),
                          userInfo: [NSLocalizedDescriptionKey: "cannot start \(argv[0]): \(String(cString: strerror(rc)))"])
        }
        return ChildProcess(pid: pid, stdoutPath: out, stderrPath: err)
    }

    /// Runs `argv` to completion (killing it after `timeoutSeconds`).
    static func run(_ argv: [String], environment: [String: String] = [:], timeoutSeconds: Double = 60) throws -> CommandResult {
        let child = try spawn(argv, environment: environment)
        child.wait(timeoutSeconds: timeoutSeconds)
        return child.result
    }

    /// Runs a shell snippet with /bin/sh -c.
    static func shell(_ script: String, timeoutSeconds: Double = 60) throws -> CommandResult {
        try run(["/bin/sh", "-c", script], timeoutSeconds: timeoutSeconds)
    }
}
