import FleetAgent
import FleetCore
import FleetInventory
import FleetProvision
import FleetWatch
import Foundation
import Testing

/// An inventory whose watcher configs the agent must read back exactly as the controller meant them,
/// or, when `refused` is set, one the inventory must refuse with an issue containing it.
struct RenderCase: Sendable, CustomTestStringConvertible {
  var name: String
  var sources: String
  var refused: String? = nil
  var testDescription: String { name }
}

/// Backup hosts every case sends to: two daemons on an IPv4 host, two on an IPv6 host (one with a fixed port).
private let backups = """
  backups:
    bk1:
      address: 10.0.0.21
      daemons:
        main:
          modules:
            home: /srv/backup/home
            proj: /srv/backup/proj
            odd: /srv/backup/odd
    bk2:
      address: "fd00::22"
      daemons:
        a: { keep_versions: 3, modules: { home: /srv/b2/home, proj: { path: /srv/b2/proj, keep_versions: 0 } } }
        b: { port: 9873, modules: { odd: /srv/b2/odd } }

  """

private let renderCases: [RenderCase] = [
  RenderCase(
    name: "defaults",
    sources: """
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            home: { path: /srv/nfs/home, to: [bk1/home] }
      """),
  RenderCase(
    name: "tuned by defaults, group, host and directory",
    sources: """
      defaults:
        watch: { excludes: [".nfs*", "*.swp"], workers: 2, full_sync_interval: 3600, backend: inotify }
      groups:
        busy:
          watch: { batch_delay_ms: 10, workers: 64, backend: fanotify }
      sources:
        nfs1:
          address: 10.0.0.11
          groups: [busy]
          watch: { batch_delay_ms: 60000 }
          directories:
            home: { path: /srv/nfs/home, to: [bk1/home], excludes: ["/cache/", "*.tmp"] }
            proj: { path: /srv/nfs/proj, to: [bk1/proj], workers: 1, full_sync_interval: 0, health_port: 9555, backend: auto }
      """),
  RenderCase(
    name: "fan-out to several backups and targets",
    sources: """
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            home: { path: /srv/nfs/home, to: [bk1/home, bk2/home] }
            proj: { path: /srv/nfs/proj, to: [bk2/proj, bk1/proj] }
        nfs2:
          address: "2001:db8::12"
          directories:
            odd: { path: /data/odd, to: [bk2/odd, bk1/odd], workers: 7, batch_delay_ms: 250 }
      """),
  RenderCase(
    name: "odd path and pattern characters",
    sources: """
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            home:
              path: "/srv/with space/a=b/x:y@z+w,v%~^"
              to: [bk1/home]
              excludes: ["a b", "#not a comment", "x = y", "=", "ünï*", "/cache/**/tmp", "trailing\\\\"]
            proj: { path: "/srv/ünïcødé/日本語/  two  spaces", to: [bk2/proj] }
            odd: { path: "/srv/odd/==/~user/-dash", to: [bk1/odd] }
      """),
  RenderCase(
    name: "a path that ends in a blank",
    sources: """
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            home: { path: "/srv/nfs/home ", to: [bk1/home] }
      """, refused: "ends with a blank"),
  RenderCase(
    name: "exclude patterns with blanks at the ends",
    sources: """
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            home: { path: /srv/nfs/home, to: [bk1/home], excludes: [" lead", "trail\\u00a0"] }
      """, refused: "begins or ends with a blank"),
]

/// Fixed ports for every instance (the controller's port book is not under test here) and a secret per module.
private func renderContext(_ inventory: Inventory) -> RenderContext {
  var ports = PortBook()
  var secrets: [String: Secret] = [:]
  var next = 20_000
  for backup in inventory.backups {
    for daemon in backup.daemons {
      ports.ports["\(backup.name)/\(ServiceName(.rsyncd, daemon.name))"] = daemon.port ?? next
      next += 1
      for module in daemon.modules { secrets["\(backup.name)/\(module.name)"] = Secret("pw-\(module.name)") }
    }
  }
  for source in inventory.sources {
    for directory in source.directories {
      for destination in directory.destinations {
        let service = ServiceName(.watch, Layout.watchInstance(directory: directory.name, to: destination))
        ports.ports["\(source.name)/\(service)"] = directory.healthPort ?? next
        next += 1
      }
    }
  }
  return RenderContext(inventory: inventory, ports: ports, secrets: secrets, watchBinary: ("/bin/true", "00"))
}

@Suite("The watcher config: what the controller renders, the agent reads")
struct WatcherConfigFormatTests {
  @Test(arguments: renderCases)
  func everyRenderedConfigParsesToTheSameSettings(_ c: RenderCase) throws {
    let inventory: Inventory
    do {
      inventory = try Inventory.parse(yaml: backups + c.sources, file: "/tmp/format.yaml")
      if let refused = c.refused { Issue.record("the inventory was accepted; expected \"\(refused)\"") }
    } catch let error as FleetError {
      let issues = (error.cause as? InventoryIssues)?.issues ?? []
      let expected = try #require(c.refused, "refused: \(error)")
      #expect(issues.contains { $0.message.contains(expected) }, "got: \(issues)")
      return
    }
    let context = renderContext(inventory)
    var checked = 0
    for source in inventory.sources {
      for systemd in [true, false] {
        let desired = try Renderer.source(
          source, context: context, systemd: systemd, currentSysctl: [:], manifest: nil)
        for directory in source.directories {
          for destination in directory.destinations {
            try expectRoundTrip(desired, source: source, directory: directory, to: destination, context)
            checked += 1
          }
        }
      }
    }
    let instances = inventory.sources.flatMap(\.directories).map(\.destinations.count).reduce(0, +)
    #expect(checked == 2 * instances && instances > 0)
  }

  /// The agent's settings from the rendered file equal what the inventory says for that instance.
  private func expectRoundTrip(
    _ desired: DesiredHost, source: SourceHost, directory: ProtectedDirectory, to destination: Destination,
    _ context: RenderContext
  ) throws {
    let instance = Layout.watchInstance(directory: directory.name, to: destination)
    let path = Layout.watchConf(instance)
    let file = try #require(desired.files.first { $0.path == path }, "no \(path)")
    guard case .bytes(let bytes) = file.content else {
      Issue.record("\(path) is not rendered text")
      return
    }
    let settings = try AgentSettings.parse(String(decoding: bytes, as: UTF8.self), file: path)
    let backup = try #require(context.inventory.backup(named: destination.backup))
    let (daemon, module) = try #require(backup.module(named: destination.module))
    let rsyncPort = try #require(context.ports.ports["\(backup.name)/\(ServiceName(.rsyncd, daemon.name))"])
    let healthPort = context.ports.ports["\(source.name)/\(ServiceName(.watch, instance))"]
    let watch = settings.watch
    #expect(watch.source == directory.path)
    #expect(
      watch.target
        == RsyncTarget(
          user: Layout.authUser(module: destination.module), host: backup.address, port: rsyncPort,
          module: destination.module))
    #expect(watch.passwordFile == Layout.watchPassword(instance))
    #expect(watch.stateDir == Layout.state + "/" + instance)
    #expect(watch.excludes == directory.watch.excludes)
    #expect(watch.batchDelay == .milliseconds(directory.watch.batchDelayMs))
    #expect(watch.workers == directory.watch.workers)
    #expect(watch.keepVersions == module.keepVersions)
    #expect(watch.backend == directory.watch.backend)
    let interval = directory.watch.fullSyncInterval
    #expect(watch.fullSyncInterval == (interval == 0 ? nil : .seconds(interval)))
    #expect(settings.healthAddress == "127.0.0.1")
    #expect(settings.healthPort == healthPort && healthPort != nil)
    // What the controller does not set keeps the agent's defaults.
    let defaults = WatchConfig(source: "/", target: watch.target, stateDir: "/")
    #expect(watch.rsyncPath == defaults.rsyncPath)
    #expect(watch.ioTimeout == defaults.ioTimeout)
    #expect(watch.connectTimeout == defaults.connectTimeout)
    #expect(watch.retryMax == defaults.retryMax)
  }

  /// The exact text: a change here changes every watcher's config hash, and so restarts every watcher.
  @Test func renderedTextIsStable() throws {
    let inventory = try Inventory.parse(
      yaml: backups + """
        sources:
          nfs1:
            address: 10.0.0.11
            directories:
              home:
                path: "/srv/a b/c=d"
                to: [bk2/home]
                excludes: ["*.tmp", "x y"]
                workers: 3
                full_sync_interval: 60
        """, file: "/tmp/format.yaml")
    let context = renderContext(inventory)
    let desired = try Renderer.source(
      inventory.sources[0], context: context, systemd: true, currentSysctl: [:], manifest: nil)
    let file = try #require(desired.files.first { $0.path == Layout.watchConf("home:bk2:home") })
    guard case .bytes(let bytes) = file.content else {
      Issue.record("not rendered text")
      return
    }
    let rsyncPort = try #require(context.ports.ports["bk2/\(ServiceName(.rsyncd, "a"))"])
    let healthPort = try #require(context.ports.ports["nfs1/\(ServiceName(.watch, "home:bk2:home"))"])
    #expect(
      String(decoding: bytes, as: UTF8.self) == """
        # Managed by fleetsync: edits are overwritten by `fleetsync up` and removed by `fleetsync down`.
        # nfs1:/srv/a b/c=d -> bk2/home
        source = /srv/a b/c=d
        target = rsync://fs-home@[fd00::22]:\(rsyncPort)/home
        password-file = /etc/fleetsync/watch/home:bk2:home.password
        state-dir = /var/lib/fleetsync/watch/home:bk2:home
        health-address = 127.0.0.1
        health-port = \(healthPort)
        batch-delay = 100
        workers = 3
        full-sync-interval = 60
        max-delete = 1000,10%
        mass-change = 500,10x,5m
        keep-versions = 3
        exclude = *.tmp
        exclude = x y

        """)
  }
}
