// Child processes with stdio pipes (uv_spawn), and a ByteStream over a child's stdin/stdout.
import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
public struct ProcessExit: Sendable, Equatable {
    /// The exit status (meaningful when `signal` is 0).
    public var status: Int64
    /// The signal that terminated it, or 0.
    public var signal: Int32
    /// The tail of what it wrote to stderr (at most `ProcessStream.maxStderrBytes`).
    public var stderr: String
    /// Whether we asked it to stop (`close()`), so a SIGTERM death is expected.
    public var stoppedByUs: Bool

    /// The last non-empty stderr line, trimmed.
    public var lastStderrLine: String {
        stderr.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }
}

/// A child process handle (`uv_process_t`).
final class ChildProcess: LoopHandle, @unchecked Sendable {
    var onExit: ((Int64, Int32) -> Void)?
    private(set) var pid: Int32 = 0
    private(set) var exited = false
    var process: UnsafeMutablePointer<uv_process_t> { raw.assumingMemoryBound(to: uv_process_t.self) }

    /// Spawns `executable` (looked up in PATH) with `arguments` (argv[1...]); `stdio` are the
    /// child's fds 0, 1, 2. The environment is inherited unless `environment` is given.
    init(loop: EventLoop, executable: String, arguments: [String], environment: [String]? = nil,
         stdio: [uv_stdio_container_t]) throws(MeshError) {
        super.init(loop: loop, size: MemoryLayout<uv_process_t>.size)
        loop.assertInLoop("ChildProcess.init")
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup($0) } + [nil] }
        defer {
            argv.forEach { free($0) }
            envp?.forEach { free($0) }
        }
        var stdioCopy = stdio
        var options = uv_process_options_t()
        options.exit_cb = { p, status, signal in
            guard let me: ChildProcess = LoopHandle.owner(UnsafeMutableRawPointer(p)) else { return }
            me.exited = true
            me.onExit?(status, signal)
        }
        let rc: Int32 = executable.withCString { file in
            argv.withUnsafeMutableBufferPointer { argvBuf in
                stdioCopy.withUnsafeMutableBufferPointer { stdioBuf in
                    options.file = file
                    options.args = argvBuf.baseAddress
                    options.stdio_count = Int32(stdioBuf.count)
                    options.stdio = stdioBuf.baseAddress
                    if envp != nil {
                        return envp!.withUnsafeMutableBufferPointer { envBuf in
                            options.env = envBuf.baseAddress
                            return uv_spawn(loop.uv, process, &options)
                        }
                    }
                    return uv_spawn(loop.uv, process, &options)
                }
            }
        }
        // uv_spawn initialises the handle even when it fails, so it must be closed either way.
        adopt()
        guard rc == 0 else {
            close()
            throw MeshError(.spawnFailed, "cannot start \(executable): \(String(cString: uv_strerror(rc)))",
                            hint: "is \(executable) installed and in PATH?", uvStatus: rc)
        }
        pid = process.pointee.pid
    }

    /// Sends `signal` to the child (ignored once it exited).
    func kill(_ signal: Int32) {
        guard state == .open, !exited else { return }
        uv_process_kill(process, signal)
    }

    /// Called once the handle has closed.
    var onClosed: (() -> Void)?

    override func didClose() {
        onExit = nil
        let cb = onClosed
        onClosed = nil
        cb?()
    }
}

/// A child process seen as a `ByteStream`: writes go to its stdin, reads come from its stdout,
/// stderr is kept (bounded) for error messages. This is how an `ssh -W host:port` tunnel becomes
/// "just another stream".
///
/// The stream closes when the child's stdout ends (after the child exited, or `exitGrace` later,
/// when it is killed with SIGKILL). `close()` sends SIGTERM and, after `exitGrace`, SIGKILL.
/// The close reason comes from `mapExit` (default: `stream.eof` for status 0, else
/// `process.exited` with the last stderr line).
public final class ProcessStream: ByteStream, @unchecked Sendable {
    public static let maxStderrBytes = 16 << 10

    public let loop: EventLoop
    public var onRead: ((UnsafeRawBufferPointer) -> Void)? {
        didSet { stdoutPipe.onRead = onRead }
    }
    public var onDrain: (() -> Void)?
    public var onClose: ((MeshError?) -> Void)?
    public var maxWriteQueueBytes: Int {
        get { stdinPipe.maxWriteQueueBytes }
        set { stdinPipe.maxWriteQueueBytes = newValue }
    }
    public var writeQueueBytes: Int { stdinPipe.writeQueueBytes }
    public var peerDescription: String
    /// How long a child may take to exit (or close its stdout) before it is killed with SIGKILL.
    public var exitGrace: Duration = .seconds(3)
    /// Maps the child's exit to the stream's close reason.
    public var mapExit: (ProcessExit) -> MeshError? = ProcessStream.defaultMapExit

    /// The child's process id.
    public var pid: Int32 { process.pid }
    /// What the child wrote to stderr so far (the last `maxStderrBytes`).
    public var stderrText: String { String(decoding: stderrTail, as: UTF8.self) }
    /// How the child ended, once it has.
    public private(set) var exit: ProcessExit?

    let process: ChildProcess
    let stdinPipe: PipeStream
    let stdoutPipe: PipeStream
    let stderrPipe: PipeStream
    private var stderrTail: [UInt8] = []
    private var stdoutDone = false
    private var stderrDone = false
    private var closing = false
    private var finished = false
    private var localClose = false
    private var streamError: MeshError?
    private var graceTimer: LoopTimer?

    public var isOpen: Bool { !closing && !finished }

    /// Starts `executable arguments...` with piped stdin/stdout/stderr. Loop thread only.
    public init(loop: EventLoop, executable: String, arguments: [String], environment: [String]? = nil,
                description: String? = nil) throws(MeshError) {
        self.loop = loop
        peerDescription = description ?? ([executable] + arguments).joined(separator: " ")
        stdinPipe = try PipeStream(loop: loop)
        do {
            stdoutPipe = try PipeStream(loop: loop)
        } catch {
            stdinPipe.close()
            throw error
        }
        do {
            stderrPipe = try PipeStream(loop: loop)
        } catch {
            stdinPipe.close()
            stdoutPipe.close()
            throw error
        }
        func container(_ p: PipeStream, _ flags: Int32) -> uv_stdio_container_t {
            var c = uv_stdio_container_t()
            c.flags = uv_stdio_flags(rawValue: UInt32(flags))
            c.data.stream = p.stream
            return c
        }
        let create = Int32(UV_CREATE_PIPE.rawValue)
        let stdio = [
            container(stdinPipe, create | Int32(UV_READABLE_PIPE.rawValue)),
            container(stdoutPipe, create | Int32(UV_WRITABLE_PIPE.rawValue)),
            container(stderrPipe, create | Int32(UV_WRITABLE_PIPE.rawValue)),
        ]
        do {
            process = try ChildProcess(loop: loop, executable: executable, arguments: arguments, environment: environment, stdio: stdio)
        } catch {
            stdinPipe.close()
            stdoutPipe.close()
            stderrPipe.close()
            throw error
        }
        let desc = peerDescription
        stdinPipe.peerDescription = "stdin of \(desc)"
        stdoutPipe.peerDescription = "stdout of \(desc)"
        stderrPipe.peerDescription = "stderr of \(desc)"
        process.onExit = { [unowned self] status, signal in self.childExited(status: status, signal: signal) }
        stdoutPipe.onClose = { [unowned self] err in
            self.stdoutDone = true
            if let err, err.code != .eof, self.streamError == nil { self.streamError = err }
            self.progress()
        }
        stderrPipe.onClose = { [unowned self] _ in
            self.stderrDone = true
            self.progress()
        }
        stderrPipe.onRead = { [unowned self] bytes in
            self.stderrTail.append(contentsOf: bytes)
            if self.stderrTail.count > Self.maxStderrBytes { self.stderrTail.removeFirst(self.stderrTail.count - Self.maxStderrBytes) }
        }
        stdinPipe.onDrain = { [unowned self] in self.onDrain?() }
        stdinPipe.onClose = { [unowned self] err in
            // EPIPE: the child closed its stdin (usually it is exiting); the exit says why.
            if let err, err.code != .eof, self.streamError == nil, !self.localClose { self.streamError = err }
        }
        stderrPipe.startReading()
        // The ProcessStream keeps itself alive until the process handle has closed.
        retainedSelf = self
    }

    private var retainedSelf: ProcessStream?

    public func startReading() {
        loop.assertInLoop("startReading")
        stdoutPipe.startReading()
    }

    public func stopReading() { stdoutPipe.stopReading() }

    public func write(_ parts: [UnsafeRawBufferPointer]) throws(MeshError) {
        guard isOpen else { throw streamError ?? MeshError(.closed, "write to closed \(peerDescription)") }
        try stdinPipe.write(parts)
    }

    public func write(frame: OutgoingFrame) throws(MeshError) {
        guard isOpen else { throw streamError ?? MeshError(.closed, "write to closed \(peerDescription)") }
        try stdinPipe.write(frame: frame)
    }

    /// Sends a signal to the child.
    public func kill(_ signal: Int32) { process.kill(signal) }

    public func close() {
        loop.assertInLoop("close")
        guard !closing, !finished else { return }
        localClose = true
        beginClosing()
        stdoutPipe.close()
        process.kill(SIGTERM)
    }

    public func close(error: MeshError) {
        guard !closing, !finished else { return }
        streamError = error
        beginClosing()
        stdoutPipe.close()
        process.kill(SIGTERM)
    }

    private func beginClosing() {
        closing = true
        stdinPipe.close()
        startGraceTimer()
    }

    private func startGraceTimer() {
        guard graceTimer == nil, let t = try? LoopTimer(loop: loop) else { return }
        graceTimer = t
        t.onFire = { [unowned self] in
            // The child did not exit or did not close its output in time.
            self.process.kill(SIGKILL)
            self.stdoutDone = true
            self.stderrDone = true
            self.stdoutPipe.close()
            self.stderrPipe.close()
            if self.process.exited { self.finish() }
        }
        t.start(after: exitGrace)
    }

    private func childExited(status: Int64, signal: Int32) {
        exit = ProcessExit(status: status, signal: signal, stderr: stderrText, stoppedByUs: localClose || closing)
        progress()
        if !finished { startGraceTimer() }  // its stdout/stderr should reach EOF promptly
    }

    private func progress() {
        guard !finished else { return }
        if stdoutDone && !process.exited && !closing {
            // Output ended: the child is about to exit; stop accepting writes.
            beginClosing()
        }
        if process.exited && stdoutDone && stderrDone { finish() }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        closing = true
        graceTimer?.close()
        graceTimer = nil
        if var e = exit {
            e.stderr = stderrText
            exit = e
        }
        let reason: MeshError?
        let mapped = exit.flatMap { mapExit($0) }
        if localClose {
            reason = nil
        } else if let mapped, mapped.code != .eof {
            reason = mapped  // the child's own account (status, stderr) beats a secondary EPIPE
        } else if let streamError {
            reason = streamError
        } else if let mapped {
            reason = mapped
        } else {
            reason = MeshError(.eof, "\(peerDescription) closed its output")
        }
        stdinPipe.close()
        stdoutPipe.close()
        stderrPipe.close()
        let cb = onClose
        onRead = nil
        onDrain = nil
        onClose = nil
        process.onExit = { _, _ in }
        // Close the process handle last: close callbacks run in order, so when its callback runs
        // every pipe is closed too.
        let me = self
        process.onClosed = { [me] in
            cb?(reason)
            me.retainedSelf = nil
        }
        process.close()
    }

    /// `stream.eof` for a clean exit, otherwise `process.exited` naming the status or signal and
    /// the last stderr line.
    public static func defaultMapExit(_ e: ProcessExit) -> MeshError? {
        if e.status == 0 && e.signal == 0 { return MeshError(.eof, "process exited") }
        let how = e.signal != 0 ? "was killed by signal \(e.signal)" : "exited with status \(e.status)"
        let line = e.lastStderrLine
        return MeshError(.processExited, "process \(how)" + (line.isEmpty ? "" : ": \(line)"))
    }
}

