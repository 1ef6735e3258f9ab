import Glibc
import Gossip
import Testing
@testable import Sync

@Suite("Folder globs and paths")
struct FolderGlobTests {
    @Test("Globs match like fnmatch(3), with and without FNM_PATHNAME, on thousands of random patterns")
    func globsMatchLikeFnmatch() {
        var rng = SplitMix64(seed: 42)
        func pick(_ s: String) -> Character { let a = Array(s); return a[Int(rng.next() % UInt64(a.count))] }
        var compared = 0
        for _ in 0..<4000 {
            var pattern = ""
            for _ in 0..<(1 + Int(rng.next() % 6)) {
                switch rng.next() % 8 {
                case 0: pattern += "*"
                case 1: pattern += "?"
                case 2: pattern += "/"
                case 3:
                    pattern += "[" + (rng.next() % 3 == 0 ? "!" : "")
                    for _ in 0..<(1 + Int(rng.next() % 2)) {
                        let c = pick("ab.c")
                        pattern += rng.next() % 3 == 0 ? "\(c)-\(pick("bcz"))" : "\(c)"
                    }
                    pattern += "]"
                case 4: pattern += "\\" + String(pick("ab*?"))
                default: pattern += String(pick("ab.c"))
                }
            }
            guard let g = Glob(pattern) else { continue }
            for _ in 0..<8 {
                let text = String((0..<Int(rng.next() % 7)).map { _ in pick("ab./c*") })
                for pathname in [false, true] {
                    let expected = fnmatch(pattern, text, pathname ? FNM_PATHNAME : 0) == 0
                    #expect(g.matches(text, pathname: pathname) == expected, "\(pattern) vs \(text) pathname=\(pathname)")
                    compared += 1
                }
            }
        }
        #expect(compared > 20_000)
    }

    @Test("Malformed globs are refused with a reason")
    func malformedGlobs() {
        #expect(Glob("[ab") == nil)
        #expect(Glob("ab\\") == nil)
        #expect(Glob("") == nil)
        #expect(Glob.problem(in: "x[") == "has an unclosed '['")
        #expect(Glob("[]]") != nil)
    }

    @Test("Only plain relative paths can be files of a folder")
    func pathProblems() {
        for ok in ["a", "a/b.db", "games/2026/x.npz", ".hidden", "a b/c"] { #expect(FolderPaths.problem(relativePath: ok) == nil, "\(ok)") }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a/..", "./a", "a//b", "a/", "a\u{0}b", "a\nb", String(repeating: "x", count: 256)] {
            #expect(FolderPaths.problem(relativePath: bad) != nil, "\(bad)")
        }
    }

    @Test("Names map to paths only under the prefix")
    func relativePaths() {
        #expect(FolderPaths.relativePath(ofName: "games/a.db", prefix: "games/") == "a.db")
        #expect(FolderPaths.relativePath(ofName: "games/", prefix: "games/") == nil)
        #expect(FolderPaths.relativePath(ofName: "gamesx/a", prefix: "games/") == nil)
        #expect(FolderPaths.relativePath(ofName: "a", prefix: "") == "a")
    }
}
