import FleetCore
import FleetInventory
import FleetWire
import Foundation
import Testing

@testable import FleetProvision

private func tempDir() -> String {
  let path = NSTemporaryDirectory() + "fleetsync-provision-\(UUID().uuidString)"
  try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

private func context(_ inventory: Inventory) throws -> (RenderContext, [String: Secret]) {
  var ports = PortBook()
  let errors = ports.assign(inventory, facts: [:])
  #expect(errors.isEmpty)
  let secrets = ["bk1/home": Secret("s3cret-home-value"), "bk1/proj": Secret("s3cret-proj-value")]
  return (
    RenderContext(inventory: inventory, ports: ports, secrets: secrets, watchBinary: ("/bin/true", "abc")),
    secrets
  )
}

private func emptyFacts(systemd: Bool = false) -> HostFacts {
  HostFacts(
    systemd: systemd, manifest: nil,
    sysctl: [
      "fs.inotify.max_user_watches": 8192, "fs.inotify.max_user_instances": 128,
      "fs.inotify.max_queued_events": 16384,
    ], sysctlWritable: true, hashes: [:], listening: [22], running: [])
}

@Suite struct PortBookTests {
  @Test func assignmentsAreStableAndSkipBusyPorts() throws {
    var book = PortBook()
    let a = try book.port(
      host: "h", service: ServiceName(.rsyncd, "a"), fixed: nil, listening: [8730], ours: [])
    #expect(a == 8731)
    let b = try book.port(
      host: "h", service: ServiceName(.rsyncd, "b"), fixed: nil, listening: [8730], ours: [])
    #expect(b == 8732)
    // A new instance added later never renumbers the existing ones.
    let c = try book.port(
      host: "h", service: ServiceName(.rsyncd, "0-first"), fixed: nil, listening: [], ours: [])
    #expect(c == 8730)
    #expect(
      try book.port(host: "h", service: ServiceName(.rsyncd, "a"), fixed: nil, listening: [], ours: [])
        == 8731)
    // Other hosts count from the base again.
    #expect(
      try book.port(host: "g", service: ServiceName(.watch, "x"), fixed: nil, listening: [], ours: []) == 9700
    )
  }

  @Test func aPortTakenBySomethingElseIsAnError() throws {
    var book = PortBook()
    #expect(throws: FleetError.self) {
      try book.port(host: "h", service: ServiceName(.rsyncd, "a"), fixed: 873, listening: [873], ours: [])
    }
    // ... but not when it is our own running instance.
    #expect(
      try book.port(host: "h", service: ServiceName(.rsyncd, "a"), fixed: 873, listening: [873], ours: [873])
        == 873)
  }

  @Test func assignmentCoversTheInventoryAndReportsEveryConflictOfAHost() throws {
    let yaml = """
      backups:
        bk1:
          address: 10.0.0.21
          daemons:
            a: { port: 8000, modules: { m1: /srv/backup/m1 } }
            b: { port: 8001, modules: { m2: /srv/backup/m2 } }
            c: { modules: { m3: /srv/backup/m3 } }
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            d1: { path: /srv/nfs/d1, to: [bk1/m1, bk1/m3] }
      """
    let inventory = try Inventory.parse(yaml: yaml, file: "/tmp/inv.yaml")
    var busy = emptyFacts()
    busy.listening = [8000, 8001, 8730]
    var book = PortBook()
    let errors = book.assign(inventory, facts: ["bk1": busy])
    #expect(errors["bk1"]?.map(\.code) == [.portTaken, .portTaken])
    #expect(errors["bk1"]?.map(\.message).joined().contains("port 8000") == true)
    #expect(errors["bk1"]?.map(\.message).joined().contains("port 8001") == true)
    #expect(errors["nfs1"] == nil)
    #expect(book.ports["bk1/rsyncd@c"] == 8731)
    #expect(book.ports["nfs1/watch@d1:bk1:m1"] == 9700 && book.ports["nfs1/watch@d1:bk1:m3"] == 9701)

    // Our own running instance holding its port is no conflict.
    var ours = busy
    ours.manifest = Manifest(supervisor: "pidfile")
    ours.manifest?.services["rsyncd@a"] = Manifest.Service(port: 8000, configHash: "x")
    ours.running = ["rsyncd@a"]
    var again = PortBook()
    let remaining = again.assign(inventory, facts: ["bk1": ours])
    #expect(remaining["bk1"]?.count == 1)
    #expect(remaining["bk1"]?.first?.message.contains("port 8001") == true)
  }

  @Test func roundTripsThroughTheStateFile() throws {
    var book = PortBook()
    _ = try book.port(host: "h", service: ServiceName(.rsyncd, "a"), fixed: nil, listening: [], ours: [])
    let path = tempDir() + "/state.json"
    try book.save(path: path)
    #expect(try PortBook.load(path: path) == book)
  }
}

@Suite struct RendererTests {
  @Test func backupConfigHasItsOwnFilesAndLimitsSenders() throws {
    let inventory = try Inventory.parse(yaml: fakeInventory, file: "/tmp/inv.yaml")
    let (ctx, _) = try context(inventory)
    let desired = try Renderer.backup(inventory.backups[0], context: ctx, systemd: false)
    let conf = try #require(desired.files.first { $0.path == Layout.rsyncdConf("main") })
    guard case .bytes(let bytes) = conf.content else { Issue.record("not bytes"); return }
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.hasPrefix("# Managed by fleetsync"))
    #expect(text.contains("port = 8730"))
    #expect(text.contains("pid file = /run/fleetsync/rsyncd-main.pid"))
    #expect(text.contains("lock file = /run/fleetsync/rsyncd-main.lock"))
    #expect(text.contains("use chroot = yes"))
    #expect(text.contains("[home]\n  path = /srv/backup/home"))
    #expect(text.contains("hosts allow = 10.0.0.11\n"))
    #expect(text.contains("hosts allow = 10.0.0.12\n"))
    #expect(!text.contains("s3cret"))
    let secrets = try #require(desired.files.first { $0.path == Layout.rsyncdSecrets("main") })
    #expect(secrets.mode == 0o600)
    #expect(secrets.secret)
    #expect(desired.services.map(\.name) == [ServiceName(.rsyncd, "main")])
    #expect(
      desired.directories.contains {
        $0.path == "/srv/backup/home" && $0.data && $0.owner == "nobody:nogroup"
      })
  }

  /// A source whose every directory is watched with fanotify needs no inotify watches.
  @Test func fanotifyOnlySourcesLeaveMaxUserWatchesAlone() throws {
    let yaml = fakeInventory.replacingOccurrences(
      of: #"home: { path: /srv/nfs/home, to: [bk1/home], excludes: ["*.tmp"] }"#,
      with: #"home: { path: /srv/nfs/home, to: [bk1/home], excludes: ["*.tmp"], backend: fanotify }"#)
    let inventory = try Inventory.parse(yaml: yaml, file: "/tmp/inv.yaml")
    let (ctx, _) = try context(inventory)
    let source = try #require(inventory.sources.first { $0.name == "nfs1" })
    let desired = try Renderer.source(
      source, context: ctx, systemd: false, currentSysctl: emptyFacts().sysctl, manifest: nil)
    #expect(desired.sysctl["fs.inotify.max_user_watches"] == nil)
    #expect(desired.sysctl["fs.inotify.max_user_instances"] != nil)
    let conf = try #require(desired.files.first { $0.path == Layout.watchConf("home:bk1:home") })
    guard case .bytes(let bytes) = conf.content else { Issue.record("not bytes"); return }
    #expect(String(decoding: bytes, as: UTF8.self).contains("\nbackend = fanotify\n"))
    // auto may end up with inotify (the filesystem decides): the limit is raised, and nothing written.
    let auto = try Renderer.source(
      inventory.sources.first { $0.name != "nfs1" }!, context: ctx, systemd: false,
      currentSysctl: emptyFacts().sysctl, manifest: nil)
    #expect(auto.sysctl["fs.inotify.max_user_watches"] == 1_048_576)
    #expect(
      !auto.files.contains { file in
        guard case .bytes(let b) = file.content else { return false }
        return String(decoding: b, as: UTF8.self).contains("backend =")
      })
  }

  @Test func sourceConfigPointsAtTheBackupAndNeverLowersSysctl() throws {
    let inventory = try Inventory.parse(yaml: fakeInventory, file: "/tmp/inv.yaml")
    let (ctx, _) = try context(inventory)
    var current = emptyFacts().sysctl
    current["fs.inotify.max_queued_events"] = 1_000_000  // already higher than the default 65536
    let desired = try Renderer.source(
      inventory.sources[0], context: ctx, systemd: false, currentSysctl: current, manifest: nil)
    let instance = "home:bk1:home"
    let conf = try #require(desired.files.first { $0.path == Layout.watchConf(instance) })
    guard case .bytes(let bytes) = conf.content else { Issue.record("not bytes"); return }
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.contains("target = rsync://fs-home@10.0.0.21:8730/home"))
    #expect(text.contains("health-port = 9700"))
    #expect(text.contains("exclude = *.tmp"))
    #expect(!text.contains("s3cret"))
    #expect(desired.sysctl["fs.inotify.max_queued_events"] == 1_000_000)
    #expect(desired.sysctl["fs.inotify.max_user_watches"] == 1_048_576)
    let password = try #require(desired.files.first { $0.path == Layout.watchPassword(instance) })
    #expect(password.mode == 0o600 && password.secret)
    #expect(desired.files.contains { $0.path == Layout.supervisor })
  }
}

@Suite struct PlannerTests {
  @Test func secondRunChangesNothingAndConfigEditRestartsOnlyThatInstance() throws {
    let inventory = try Inventory.parse(yaml: fakeInventory, file: "/tmp/inv.yaml")
    let (ctx, _) = try context(inventory)
    let desired = try Renderer.backup(inventory.backups[0], context: ctx, systemd: false)
    let first = Planner.up(desired: desired, facts: emptyFacts())
    #expect(first.files.allSatisfy { $0.kind == .create })
    #expect(first.services.map(\.kind) == [.start])

    // The host after the first run.
    var after = emptyFacts()
    after.manifest = first.manifest
    for file in desired.files { after.hashes[file.path] = file.sha256 }
    after.running = ["rsyncd@main"]
    let second = Planner.up(desired: desired, facts: after)
    #expect(second.isEmpty)
    #expect(!second.manifestChanged)

    // A stopped instance is started again (convergence), nothing else.
    after.running = []
    #expect(Planner.up(desired: desired, facts: after).services.map(\.kind) == [.start])
  }

  @Test func removedInstancesAreStoppedAndTheirFilesDeleted() throws {
    let inventory = try Inventory.parse(yaml: fakeInventory, file: "/tmp/inv.yaml")
    let (ctx, _) = try context(inventory)
    let desired = try Renderer.source(
      inventory.sources[0], context: ctx, systemd: false, currentSysctl: emptyFacts().sysctl, manifest: nil)
    var facts = emptyFacts()
    facts.manifest = Planner.up(desired: desired, facts: facts).manifest
    facts.manifest?.services["watch@old:bk1:home"] = Manifest.Service(port: 9701, configHash: "x")
    facts.manifest?.files[Layout.watchConf("old:bk1:home")] = Manifest.File(sha256: "x", secret: false)
    facts.hashes[Layout.watchConf("old:bk1:home")] = "x"
    let plan = Planner.up(desired: desired, facts: facts)
    #expect(plan.services.contains { $0.kind == .stop && $0.service.instance == "old:bk1:home" })
    #expect(plan.files.contains { $0.kind == .delete && $0.path == Layout.watchConf("old:bk1:home") })
  }

  @Test func downRestoresOnlyWhatFleetsyncChanged() {
    var facts = emptyFacts()
    var manifest = Manifest(supervisor: "pidfile")
    manifest.sysctl["fs.inotify.max_user_watches"] = Manifest.SysctlChange(previous: 8192, applied: 1_048_576)
    manifest.sysctl["fs.inotify.max_queued_events"] = Manifest.SysctlChange(previous: 16384, applied: 65536)
    manifest.files[Layout.sysctl] = Manifest.File(sha256: "x", secret: false)
    facts.manifest = manifest
    facts.hashes[Layout.sysctl] = "x"
    facts.sysctl["fs.inotify.max_user_watches"] = 1_048_576
    facts.sysctl["fs.inotify.max_queued_events"] = 99999  // changed by someone else since: left alone
    let ref = HostRef(name: "h", address: "a", ssh: SSHSettings(), groups: [], role: .source)
    let plan = Planner.down(host: ref, facts: facts, deleteData: false)
    #expect(plan.sysctl == [SysctlAction(key: "fs.inotify.max_user_watches", from: 1_048_576, to: 8192)])
    #expect(plan.files.contains { $0.path == Layout.sysctl && $0.kind == FileChange.Kind.delete })
  }
}

@Suite struct FactsTests {
  @Test func parsesTheFactsScriptOutput() throws {
    let text = """
      @@systemd
      no
      @@manifest

      @@sysctl
      fs.inotify.max_user_watches 8192
      @@hash
      \(String(repeating: "a", count: 64))  /etc/fleetsync/rsyncd/main.conf
      @@listen
        sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
         0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
         1: 0100007F:2222 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 1 1
      @@running
      rsyncd@main
      @@end
      """
    let facts = try HostFacts.parse(text)
    #expect(facts.sysctlWritable, "writable unless the host says otherwise")
    #expect(!facts.systemd)
    #expect(facts.manifest == nil)
    #expect(facts.sysctl["fs.inotify.max_user_watches"] == 8192)
    #expect(facts.hashes["/etc/fleetsync/rsyncd/main.conf"] == String(repeating: "a", count: 64))
    #expect(facts.listening == [22])
    #expect(facts.running == ["rsyncd@main"])
  }
}

@Suite struct SectionedOutputTests {
  @Test func splitsAtMarkersAndKeepsEmptySections() throws {
    let output = SectionedOutput("noise\n@@a\n1\n2\n@@b\n@@watch@x:bk1:m\nhealthy\n@@a\n3\n")
    #expect(output["a"] == ["1", "2", "3", ""])
    #expect(output["b"] == [])
    #expect(output["watch@x:bk1:m"] == ["healthy"])
    #expect(output["missing"] == nil)
    #expect(try SectionedOutput.marker("rsyncd@main") == "echo '@@rsyncd@main'")
  }
}

@Suite struct HealthProbeTests {
  @Test func statusScriptHasASectionPerInstance() throws {
    let script = try StatusProbe.probes([
      (ServiceName(.rsyncd, "main"), 8730), (ServiceName(.watch, "home:bk1:home"), 9700),
    ])
    #expect(
      script.hasPrefix(
        StatusProbe.header + "bash <<'\(HealthProbe.bashEnd)'\n" + HealthProbe.functions
          + StatusProbe.infoFunction
          + ModuleProbe.function))
    #expect(
      script.contains(
        "systemctl show -p Id -p NRestarts -p MainPID 'fleetsync-rsyncd@main.service' "
          + "'fleetsync-watch@home:bk1:home.service' </dev/null"))
    // Each section ends with the mark of a restart for not answering, when there is one.
    let mark =
      "[ -f '/run/fleetsync/watch-home:bk1:home.unanswered' ] && read -r l <"
      + "'/run/fleetsync/watch-home:bk1:home.unanswered' && echo \"unanswered $l\"\n"
    #expect(
      script.contains(
        "{\necho '@@rsyncd@main 8730'\nprobe rsyncd 8730 && echo healthy && modules 'main' 8730\ninfo "))
    #expect(
      script.contains(
        "{\necho '@@watch@home:bk1:home 9700'\nprobe watch 9700 && echo healthy\nstatus_body 9700\n"
          + "printf 'clock %(%s)T\\n' -1\n"
          + "info 'fleetsync-watch@home:bk1:home.service' '/run/fleetsync/watch-home:bk1:home' watch\n"
          + mark + "} >\"$d/000001\" 2>/dev/null &\npids+=($!)\n"))
    #expect(script.hasSuffix("cat \"$d\"/* 2>/dev/null; rm -rf \"$d\"\n\(HealthProbe.bashEnd)\n"))
    #expect(try StatusProbe.probes([]) == StatusProbe.header, "no instance, no probe")
  }

  /// Run for real (nothing listening): every instance's section comes back whole and in order.
  ///
  /// Under bash: the test runner's threads block SIGCHLD, which their children inherit, and dash's
  /// `wait` then never returns (sshd starts a remote command with no signal blocked).
  @Test func statusProbesRunAtOnceAndPrintInOrder() throws {
    let instances: [StatusProbe.Instance] = (0..<12).map { (ServiceName(.watch, "d\($0):bk1:m"), 1 + $0) }
    let out = try LocalShellHost.runNow(
      "exec bash -c " + (try ShellQuote.quote(try StatusProbe.probes(instances))))
    #expect(out.status == 0, "\(out)")
    let sections = SectionedOutput(out.stdout)
    for instance in instances {
      let reading = StatusProbe.reading(instance, in: sections)
      #expect(reading?.healthy == false && reading?.restarts == 0, "\(instance.name): \(out.stdout)")
    }
    let markers = out.stdout.split(separator: "\n").filter { $0.hasPrefix("@@") }.map(String.init)
    #expect(markers == instances.map { "@@" + StatusProbe.section($0) })
  }

  @Test func statusReadingsComeFromTheirOwnSectionAndPort() {
    let output = SectionedOutput(
      "@@watch@a:bk1:m 9700\nhealthy\n{\"state\":\"watching\"}\nrestarts 3\nuptime 42\nunanswered 1795000000 heal\n@@rsyncd@bk1 8730\nrestarts 0\n"
    )
    let watcher = StatusProbe.reading((ServiceName(.watch, "a:bk1:m"), 9700), in: output)
    #expect(
      watcher
        == StatusProbe.Reading(
          healthy: true, statusJSON: "{\"state\":\"watching\"}", restarts: 3, uptimeSeconds: 42,
          unansweredMark: "1795000000 heal"))
    #expect(
      StatusProbe.reading((ServiceName(.rsyncd, "bk1"), 8730), in: output)
        == StatusProbe.Reading(healthy: false, statusJSON: nil, restarts: 0, uptimeSeconds: nil))
    #expect(StatusProbe.reading((ServiceName(.watch, "a:bk1:m"), 9701), in: output) == nil, "another port")
  }

  @Test func waitScriptReportsWhatDidNotAnswer() {
    let service = DesiredService(
      name: ServiceName(.watch, "home:bk1:home"), port: 9700, configHash: "")
    let script = HealthProbe.waitScript([service], seconds: 7)
    #expect(
      script.hasPrefix("bash <<'FLEETSYNC_BASH_END'\n" + HealthProbe.functions + "now; end=$((now + 7))\n"))
    #expect(script.hasSuffix("\n\(HealthProbe.bashEnd)\n"))
    #expect(script.contains("until probe watch 9700; do"))
    #expect(
      HealthProbe.failures(in: "watch@home:bk1:home HTTP/1.1 503 degraded: out of watches\n")
        == ["watch@home:bk1:home": "HTTP/1.1 503 degraded: out of watches"])
  }
}

@Suite struct SecretStoreTests {
  @Test func generatesPersistsAndRefusesWorldReadableFiles() throws {
    let path = tempDir() + "/inv.secrets"
    var store = try SecretStore(path: path)
    let module = RsyncModule(name: "home", path: "/srv/x", secretFile: nil)
    let secret = try store.secret(backup: "bk1", module: module)
    #expect(secret.revealed.count >= 40)
    #expect(try store.secret(backup: "bk1", module: module) == secret)
    try store.save()
    let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
    #expect(mode == 0o600)
    var again = try SecretStore(path: path)
    #expect(try again.secret(backup: "bk1", module: module) == secret)
    #expect(
      try again.secret(backup: "bk1", module: RsyncModule(name: "other", path: "/x", secretFile: nil))
        != secret)
    chmod(path, 0o644)
    #expect(throws: FleetError.self) { try SecretStore(path: path) }
  }
}

@Suite struct UnifiedDiffTests {
  @Test func showsChangedLinesWithContext() {
    let old = "a\nb\nc\nd\ne\nf\ng\nh\n"
    let new = "a\nb\nc\nD\ne\nf\ng\nh\n"
    let diff = UnifiedDiff.make(old: old, new: new, path: "/x")
    #expect(diff.contains("@@ -1,"))
    #expect(diff.contains("-d\n+D\n"))
    #expect(UnifiedDiff.make(old: old, new: old, path: "/x").isEmpty)
    #expect(
      UnifiedDiff.make(old: "", new: "a\nb\n", path: "/x") == "--- /x\n+++ /x\n@@ -0,0 +1,2 @@\n+a\n+b\n")
  }
}

@Suite struct UnitFilesTests {
  /// The unit templates in `systemd/` are exactly what `up` installs.
  @Test func repositoryUnitsMatchInstalledOnes() throws {
    var url = URL(fileURLWithPath: #filePath)
    while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      url.deleteLastPathComponent()
    }
    let rsyncd = try String(contentsOfFile: url.path + "/systemd/fleetsync-rsyncd@.service", encoding: .utf8)
    #expect(rsyncd == Units.rsyncd)
    let watch = try String(contentsOfFile: url.path + "/systemd/fleetsync-watch@.service", encoding: .utf8)
    #expect(watch == Units.watch)
  }
}

@Suite struct LayoutTests {
  /// The inventory refuses data paths that overlap every directory fleetsync keeps its files in.
  @Test func everyDirectoryOfFleetsyncIsOffLimitsForData() {
    for path in [Layout.etc, Layout.run, Layout.log, Layout.state, Layout.watchBinary, Layout.supervisor] {
      #expect(
        Inventory.fleetsyncDirectories.contains { path == $0 || path.hasPrefix($0 + "/") },
        "\(path) is not covered by Inventory.fleetsyncDirectories")
    }
  }
}
