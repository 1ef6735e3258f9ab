// swift-tools-version: 6.2
//
// meshnode: a gossip peer-to-peer mesh node.
//
// Module graph (arrows point at dependencies):
//
//   meshnode (CLI) ──► Mesh (libuv runtime) ──► Store (SQLite, chunks, identity) ──► Sync (pure) ──► Gossip (pure)
//   meshsim ──► MeshSim (simulator) ─────────────────────────────────────────────────┘
//
//   Gossip and Sync have no dependency but Gossip: no sockets, no clock, no global randomness, no C.
import PackageDescription

let strict: [SwiftSetting] = [
    .treatWarning("ActorIsolatedCall", as: .error),
]

let package = Package(
    name: "meshnode",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "meshnode", targets: ["meshnode"]),
        .executable(name: "meshsim", targets: ["meshsim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        // Metrics: swift-metrics' API, exported in Prometheus' text format by swift-prometheus
        // (one PrometheusCollectorRegistry per node, never the global MetricsSystem).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages, found through pkg-config.
        .systemLibrary(
            name: "CLibUV", path: "Sources/CLibUV", pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"]), .brew(["libuv"])]),
        .systemLibrary(
            name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]),
        // libcrypto only for AES-256-GCM, the session cipher: 2.5x libsodium 1.0.18's here (README, "Transfer speed").
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"]), .brew(["openssl"])]),
        // libxxhash only for XXH3-64: a served folder file's chunk is checked against the fingerprint of the bytes hashed at its put (Store/ChunkFingerprints.swift).
        .systemLibrary(
            name: "CXXHash", path: "Sources/CXXHash", pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"]), .brew(["xxhash"])]),
        .systemLibrary(
            name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]),

        // BLAKE2b (RFC 7693) in portable C: faster here than libsodium's (Sources/CBlake2b/blake2b.c).
        // Always optimised, debug builds too: the tests hash gigabytes.
        .target(name: "CBlake2b", path: "Sources/CBlake2b", cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "Gossip", path: "Sources/Gossip", swiftSettings: strict),
        // Decisions (versions, deletes, retention, what to keep, fetch and materialise): pure, like Gossip.
        .target(name: "Sync", dependencies: ["Gossip"], path: "Sources/Sync", swiftSettings: strict),
        .target(
            name: "Store", dependencies: ["Gossip", "Sync", "CSodium", "CSQLite", "CBlake2b", "CXXHash"],
            path: "Sources/Store", swiftSettings: strict),
        .target(
            name: "Mesh",
            dependencies: [
                "Gossip", "Sync", "Store", "CLibUV", "CSodium", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/Mesh", swiftSettings: strict),
        .executableTarget(
            name: "meshnode",
            dependencies: [
                "Mesh", "Store", "Gossip", "Sync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/meshnode", swiftSettings: strict),

        // The deterministic simulator: a library (so tests can drive it) and its CLI.
        .target(
            name: "MeshSim", dependencies: ["Gossip", "Sync"],
            path: "simulations/Sources/MeshSim", swiftSettings: strict),
        .executableTarget(
            name: "meshsim",
            dependencies: [
                "MeshSim", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "simulations/Sources/meshsim", swiftSettings: strict),

        // Helpers shared by the test targets (temp dirs, seeded files): Foundation only.
        .target(name: "TestSupport", dependencies: [], path: "Tests/TestSupport", swiftSettings: strict),

        .testTarget(name: "GossipTests", dependencies: ["Gossip"], path: "Tests/GossipTests"),
        .testTarget(name: "SyncTests", dependencies: ["Sync", "Gossip"], path: "Tests/SyncTests"),
        .testTarget(name: "StoreTests", dependencies: ["Store", "Gossip", "TestSupport"], path: "Tests/StoreTests"),
        .testTarget(
            name: "MeshTests", dependencies: ["Mesh", "Store", "Gossip", "Sync", "TestSupport"], path: "Tests/MeshTests"),
        .testTarget(name: "SimulationTests", dependencies: ["MeshSim", "Gossip", "TestSupport"], path: "Tests/SimulationTests"),
        // Starts real `meshnode` processes; depends on the executable so it is built first.
        .testTarget(
            name: "CLITests", dependencies: ["meshnode", "Store", "Gossip", "Sync", "TestSupport"], path: "Tests/CLITests"),
    ]
)
