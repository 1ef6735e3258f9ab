import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Bytes on disk under `path` (st_blocks, every regular file, not following links).
func diskBytes(_ path: String) -> UInt64 {
    var total: UInt64 = 0
    guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
    var st = stat()
    if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { return UInt64(st.st_blocks) * 512 }
    while let rel = e.nextObject() as? String {
        if lstat(path + "/" + rel, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { total += UInt64(st.st_blocks) * 512 }
    }
    return total
}

/// A receive node holds a folder's items once: the folder files back their chunks.
@Suite(.serialized, .ownThread()) struct FolderDiskTests {
    @Test("A receive node's disk stays within 1.1× its folder's bytes, and a file changed in one chunk arrives with one chunk fetched",
          .ownThread(timeLimit: .minutes(4)))
    func receiveNodeHoldsItsFolderOnce() throws {
        let p = try FolderPair()
        let sizes = [24 << 20, 24 << 20, 16 << 20]  // 64 MiB
        for (i, size) in sizes.enumerated() {
            let staged = p.cluster.root.sub("staged-\(i)")
            try writePseudoRandomFile(staged, size: size, seed: UInt64(40 + i))
            _ = rename(staged, p.send + "/f\(i).bin")
        }
        try eventually(120, "the three files on B\n\(p.logs)") { (0..<3).allSatisfy { p.same("f\($0).bin") } }
        let folderBytes = UInt64(sizes.reduce(0, +))
        var used: (data: UInt64, chunks: UInt64, folder: UInt64) = (0, 0, 0)
        try eventually(20, "B's chunk files released: \(used)\n\(p.logs)") {
            used = (diskBytes(p.b.dataDir), diskBytes(p.b.dataDir + "/chunks"), diskBytes(p.recv))
            return used.chunks < 1 << 20
        }
        let ratio = Double(used.data + used.folder) / Double(folderBytes)
        print("receive node disk: data dir \(used.data) B (chunks \(used.chunks) B) + folder \(used.folder) B for \(folderBytes) B of files: \(String(format: "%.3f", ratio))×")
        #expect(ratio <= 1.1, "data dir \(used.data) + folder \(used.folder) for \(folderBytes)")
        // `meshnode get` (another process) reads the items from the folder files, verified.
        let out = p.cluster.root.sub("f1.exported")
        let g = try Meshnode.run(["get", "data/f1.bin", "-o", out, "--data", p.b.dataDir])
        #expect(g.status == 0, "\(g)")
        #expect(FileManager.default.contentsEqual(atPath: p.send + "/f1.bin", andPath: out))
        // One chunk (2 MiB) of f0 changes on A, in place: B fetches that chunk and copies the rest.
        let fetchedBefore = p.b.blobCounter("chunks_fetched")
        let fd = open(p.send + "/f0.bin", O_WRONLY)
        #expect(fd >= 0)
        var patch = [UInt8](repeating: 0xab, count: 4096)
        _ = pwrite(fd, &patch, patch.count, off_t(5 << 20))
        close(fd)
        try eventually(60, "the changed f0 on B\n\(p.logs)") { p.same("f0.bin") }
        let fetched = p.b.blobCounter("chunks_fetched") - fetchedBefore
        print("chunks fetched for a 1-chunk change of a 24 MiB file: \(fetched)")
        #expect(fetched == 1, "only the changed chunk is fetched")
        // The old version stays kept (keep_versions 3): its one changed chunk is a chunk file now.
        let after = (diskBytes(p.b.dataDir), diskBytes(p.recv))
        let ratioAfter = Double(after.0 + after.1) / Double(folderBytes)
        print("after the change: \(String(format: "%.3f", ratioAfter))×")
        #expect(ratioAfter <= 1.1)
        let s = try Meshnode.run(["status", "--data", p.b.dataDir, "--json"])
        let node = ((try? parseJSON(s.stdout)) as? [String: Any])?["node"] as? [String: Any]
        let backed = node?["backed"] as? [String: Any]
        #expect((backed?["chunks_copied"] as? Int ?? 0) >= 11, "\(String(describing: backed))")
        #expect(backed?["mismatches"] as? Int == 0)
    }
}
