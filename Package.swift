// swift-tools-version: 6.1
import PackageDescription

/// System libraries come from Debian's -dev packages through pkg-config; each has a
/// shim header with static-inline helpers for what Swift cannot import directly.
let package = Package(
    name: "Tiergate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tiergate", targets: ["tiergate"]),
        .library(name: "Gateway", targets: ["Gateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The daemon's loopback listener (metrics and the status page); no traits: neither
        // swift-configuration nor full Foundation is needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        .systemLibrary(name: "CRocksDB", pkgConfig: "rocksdb", providers: [.apt(["librocksdb-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),

        .target(name: "CLinux"),

        .target(name: "Hashing", dependencies: ["CXXHash", "CCrypto"]),
        .target(name: "RocksDB", dependencies: ["CRocksDB"]),
        .target(name: "Chunking", dependencies: ["Hashing"]),
        .target(name: "Telemetry", dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")]),
        .target(name: "Backends", dependencies: ["Hashing", "CCurl", "CLinux", "Telemetry"]),
        .target(name: "CloudShare", dependencies: ["Backends", "Chunking", "Hashing", "CLinux"]),
        .target(name: "Fanotify", dependencies: ["CLinux"]),
        .target(name: "FUSE", dependencies: ["CFuse3"]),
        .target(name: "Gateway", dependencies: ["CloudShare", "Backends", "Chunking", "Hashing", "RocksDB", "CLinux", "Fanotify", "FUSE",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Mustache", package: "swift-mustache"),
            "Telemetry",
        ]),
        .executableTarget(name: "tiergate", dependencies: [
            "Gateway", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tiergate-bench", dependencies: ["Gateway", "CloudShare", "Chunking", "Hashing", "Backends", "FUSE", "Fanotify", "ObjectStoreServers"], path: "bench/Sources"),

        // The real S3 servers the tests and benchmarks start on loopback (Tests/support/*.sh).
        .target(name: "ObjectStoreServers", dependencies: ["Backends"], path: "Tests/ObjectStoreServers"),

        .testTarget(name: "HashingTests", dependencies: ["Hashing"]),
        .testTarget(name: "RocksDBTests", dependencies: ["RocksDB"]),
        .testTarget(name: "ChunkingTests", dependencies: ["Chunking"]),
        .testTarget(name: "BackendsTests", dependencies: ["Backends", "ObjectStoreServers"]),
        .testTarget(name: "CloudShareTests", dependencies: ["CloudShare", "Backends", "Chunking"]),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "Telemetry", "ObjectStoreServers"]),
        .testTarget(name: "FanotifyTests", dependencies: ["Fanotify", "CLinux"]),
        .testTarget(name: "FUSETests", dependencies: ["FUSE"]),
    ],
    swiftLanguageModes: [.v6]
)
