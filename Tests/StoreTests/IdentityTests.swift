import Foundation
import Store
import TestSupport
import Testing

@Suite("Node identity")
struct IdentityTests {
    @Test("The identity file is 0600, 64 bytes, and reloads to the same node id")
    func savedAndReloaded() throws {
        let f = try Fixture()
        let path = "\(f.dataDir)/identity.key"
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(st.st_size == 64)
        let again = try NodeIdentity.load(dataDir: f.dataDir)
        #expect(again.nodeID == f.identity.nodeID)
        #expect(f.identity.nodeID.description.count == 52)
        #expect(f.identity.nodeID.short.count == 10)
        #expect(NodeID(f.identity.nodeID.description) == f.identity.nodeID)
        // No temp files are left next to it.
        #expect(FS.list(f.dataDir).filter { $0.hasPrefix(".") }.isEmpty)
    }

    @Test("Initialising over an existing identity is refused and the key is unchanged")
    func refusesOverwrite() throws {
        let f = try Fixture()
        let before = try readBytes("\(f.dataDir)/identity.key")
        #expect(meshError { _ = try Store.initialize(dataDir: f.dataDir, name: "again") }?.code == .alreadyInitialized)
        #expect(meshError { try NodeIdentity.generate().save(dataDir: f.dataDir) }?.code == .alreadyInitialized)
        #expect(try readBytes("\(f.dataDir)/identity.key") == before)
    }

    @Test("An init interrupted after saving the key is completed with the same key")
    func interruptedInit() throws {
        let d = TestDir("store")
        let data = d.sub("data")
        try FS.mkdirs(data)
        let id = NodeIdentity.generate()
        try id.save(dataDir: data)
        let (_, loaded) = try Store.initialize(dataDir: data, name: "resumed")
        #expect(loaded.nodeID == id.nodeID)
        #expect(meshError { _ = try Store.initialize(dataDir: data, name: "again") }?.code == .alreadyInitialized)
    }

    @Test("Signatures verify, and fail for another message, key or a flipped bit")
    func signVerify() throws {
        let a = NodeIdentity.generate(), b = NodeIdentity.generate()
        let msg = Array("hello mesh".utf8)
        let sig = a.sign(msg)
        let v = Ed25519Verifier()
        #expect(v.verify(sig, of: msg, by: a.nodeID))
        #expect(!v.verify(sig, of: msg + [0], by: a.nodeID))
        #expect(!v.verify(sig, of: msg, by: b.nodeID))
        var bytes = sig.bytes
        bytes[10] ^= 1
        #expect(!Ed25519.verify(Signature(bytes: bytes)!, of: msg, by: a.nodeID))
        // Seeds are deterministic (RFC 8032 test vector 1's public key).
        let seed = Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!
        #expect(NodeIdentity.fromSeed(seed).nodeID.key.hex == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    }

    @Test("A damaged or missing identity file is refused with a one-line error")
    func damaged() throws {
        let f = try Fixture()
        let path = "\(f.dataDir)/identity.key"
        flipByte(path, at: 40)  // in the public-key half
        #expect(meshError { _ = try NodeIdentity.load(dataDir: f.dataDir) }?.code == .corrupt)
        unlink(path)
        let e = try #require(meshError { _ = try f.store.loadIdentity() })
        #expect(e.code == .notInitialized)
        #expect(e.line.hasPrefix("meshnode: error: no node identity"))
    }
}
