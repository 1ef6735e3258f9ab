import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A small tmpfs mounted for a test (needs root or CAP_SYS_ADMIN), unmounted and
/// removed when released. Used to produce a real "no space left on device".
final class TmpfsMount {
    let path: String

    /// Mounts a tmpfs of `sizeBytes`; nil if mounting is not permitted here.
    init?(sizeBytes: Int) {
        var template = Array("/tmp/meshnode-tmpfs-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return nil }
        path = String(cString: p)
        let r = try? Subprocess.run(["mount", "-t", "tmpfs", "-o", "size=\(sizeBytes)", "tmpfs", path], timeoutSeconds: 10)
        guard r?.status == 0 else {
            rmdir(path)
            return nil
        }
    }

    deinit {
        if (try? Subprocess.run(["umount", path], timeoutSeconds: 10))?.status != 0 {
            _ = try? Subprocess.run(["umount", "-l", path], timeoutSeconds: 10)
        }
        rmdir(path)
    }

    /// Whether this machine lets the tests mount a tmpfs (probed once).
    static let isSupported: Bool = TmpfsMount(sizeBytes: 1 << 20) != nil

    func sub(_ name: String) -> String { "\(path)/\(name)" }
}
