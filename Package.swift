// swift-tools-version: 6.2
import PackageDescription

/// Settings every fleetsync target shares: Swift 6 mode, strict concurrency, explicit imports.
let strictSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

/// The integration tests use Glibc's `struct stat`, which several clang modules of their large
/// dependency graph (Glibc, CoreFoundation, CDispatch, …) declare; which one the compiler takes as
/// its owner varies between builds, and `MemberImportVisibility` then asks for an import of that
/// one. The rest of the strict settings apply.
let integrationTestSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
  name: "fleetsync",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "fleetsync", targets: ["fleetsync"]),
    .executable(name: "fleetsync-watch", targets: ["fleetsync-watch"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.0"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
  ],
  targets: [
    // C shim over the system libssh2 (Debian: libssh2-1-dev).
    .systemLibrary(
      name: "CLibSSH2",
      pkgConfig: "libssh2",
      providers: [.apt(["libssh2-1-dev"])]
    ),

    // C shim: Landlock syscalls and a confined spawn for the rsync sender.
    .target(name: "CLandlock"),

    // C shim: fanotify with file handles (Glibc's Swift module has neither).
    .target(name: "CFanotify"),

    // Shared vocabulary: error values, shell quoting, atomic local files.
    .target(
      name: "FleetCore",
      swiftSettings: strictSettings
    ),

    // SSH client over libssh2: sessions, host keys, auth, exec, atomic upload, fan-out.
    .target(
      name: "FleetSSH",
      dependencies: [
        "CLibSSH2",
        "FleetCore",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: strictSettings
    ),

    // The formats the controller and the agent share: the watcher config (keys and syntax) and `/status`.
    .target(
      name: "FleetWire",
      dependencies: ["FleetCore"],
      swiftSettings: strictSettings
    ),

    // Inventory: YAML model, defaults/overrides, validation with file:line:column.
    .target(
      name: "FleetInventory",
      dependencies: [
        "FleetCore",
        "FleetWire",
        .product(name: "Yams", package: "Yams"),
      ],
      swiftSettings: strictSettings
    ),

    // Provisioning: plan/up/down/status of a fleet over SSH.
    .target(
      name: "FleetProvision",
      dependencies: [
        "FleetCore",
        "FleetSSH",
        "FleetInventory",
        "FleetWire",
        "FleetWatch",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Crypto", package: "swift-crypto"),
      ],
      swiftSettings: strictSettings
    ),

    // Watcher engine: inotify or fanotify, batching, journal, rsync transfers.
    .target(
      name: "FleetWatch",
      dependencies: [
        "CFanotify",
        "CLandlock",
        "FleetCore",
        "FleetWire",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Subprocess", package: "swift-subprocess"),
      ],
      swiftSettings: strictSettings
    ),

    // Health: HTTP endpoint (/healthz, /status, /metrics), Prometheus metrics, systemd notify.
    .target(
      name: "FleetHealth",
      dependencies: [
        "FleetCore",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ],
      swiftSettings: strictSettings
    ),

    // The watcher agent: config file, engine + health + signals under ServiceLifecycle.
    .target(
      name: "FleetAgent",
      dependencies: [
        "FleetCore",
        "FleetWatch",
        "FleetHealth",
        "FleetWire",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),

    // The controller's supervisor: heal passes on an interval, restart budget, /metrics.
    .target(
      name: "FleetSupervise",
      dependencies: [
        "FleetCore",
        "FleetInventory",
        "FleetProvision",
        "FleetHealth",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: strictSettings
    ),

    // Thin executables.
    .executableTarget(
      name: "fleetsync",
      dependencies: [
        "FleetCore",
        "FleetSSH",
        "FleetInventory",
        "FleetProvision",
        "FleetSupervise",
        "FleetHealth",
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strictSettings
    ),
    .executableTarget(
      name: "fleetsync-watch",
      dependencies: [
        "FleetCore",
        "FleetAgent",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strictSettings
    ),

    // Test helpers: the multi-host test fleet (network namespaces, sshd per node).
    .target(
      name: "FleetTestSupport",
      dependencies: ["FleetCore", "FleetSSH", .product(name: "Crypto", package: "swift-crypto")],
      path: "Tests/FleetTestSupport",
      swiftSettings: strictSettings
    ),

    .testTarget(name: "FleetCoreTests", dependencies: ["FleetCore"], swiftSettings: strictSettings),
    .testTarget(name: "FleetInventoryTests", dependencies: ["FleetInventory"], swiftSettings: strictSettings),
    .testTarget(
      name: "FleetProvisionTests",
      dependencies: ["FleetProvision", "FleetInventory", "FleetCore"],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "FleetSuperviseTests", dependencies: ["FleetSupervise", "FleetProvision"],
      swiftSettings: strictSettings),
    .testTarget(
      name: "FleetSSHTests", dependencies: ["FleetSSH", "FleetTestSupport"], swiftSettings: strictSettings),
    .testTarget(
      name: "FleetWatchTests", dependencies: ["FleetWatch", "FleetTestSupport"], swiftSettings: strictSettings
    ),
    .testTarget(
      name: "FleetHealthTests",
      dependencies: ["FleetHealth", "FleetAgent", "FleetWire", "FleetTestSupport"],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "FleetWireTests",
      dependencies: [
        "FleetWire", "FleetAgent", "FleetHealth", "FleetProvision", "FleetInventory", "FleetWatch",
        "FleetCore",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strictSettings
    ),
    .testTarget(
      name: "IntegrationTests",
      dependencies: [
        "FleetCore", "FleetSSH", "FleetWatch", "FleetAgent", "FleetProvision", "FleetTestSupport",
      ],
      swiftSettings: integrationTestSettings
    ),
  ]
)
