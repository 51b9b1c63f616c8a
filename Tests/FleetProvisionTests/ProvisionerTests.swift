import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// `plan`, `up`, `down` and `status` of the real ``Provisioner`` over in-memory nodes.
@Suite struct ProvisionerTests {
  @Test func planChangesNothingAnywhere() async throws {
    let fleet = try FakeFleet()
    let report = try await fleet.provisioner().plan()
    #expect(report.hosts.map(\.host) == ["nfs1", "nfs2", "bk1"])
    #expect(report.hosts.allSatisfy { $0.outcome == .changed })
    for host in fleet.hosts.values {
      #expect(host.state.steps == [.facts], "\(host.name)")
      #expect(host.state.files.isEmpty)
    }
    // Nothing local either: no secrets generated into the file, no port book.
    #expect(!FileManager.default.fileExists(atPath: fleet.dir + "/inv.secrets"))
    #expect(!FileManager.default.fileExists(atPath: fleet.dir + "/inv.state.json"))
    // New text files come with a diff; secrets and the binary never do.
    let nfs1 = try #require(report.hosts.first { $0.host == "nfs1" }?.plan)
    let conf = try #require(nfs1.files.first { $0.path == Layout.watchConf("home:bk1:home") })
    #expect(conf.diff?.contains("+exclude = *.tmp") == true)
    #expect(nfs1.files.first { $0.path == Layout.watchPassword("home:bk1:home") }?.diff == nil)
    #expect(nfs1.files.first { $0.path == Layout.watchBinary }?.diff == nil)
  }

  @Test func planAfterAnEditShowsTheDiffAndWritesNothing() async throws {
    let fleet = try FakeFleet()
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    let edited = fakeInventory.replacingOccurrences(of: #"["*.tmp"]"#, with: #"["*.log"]"#)
    let report = try await fleet.provisioner(edited).plan()
    let nfs1 = try #require(report.hosts.first { $0.host == "nfs1" })
    #expect(nfs1.outcome == .changed)
    let conf = try #require(nfs1.plan?.files.first { $0.path == Layout.watchConf("home:bk1:home") })
    #expect(conf.kind == .update)
    #expect(conf.diff?.contains("-exclude = *.tmp\n+exclude = *.log\n") == true)
    #expect(nfs1.plan?.services.map(\.kind) == [.restart])
    #expect(report.hosts.filter { $0.host != "nfs1" }.allSatisfy { $0.outcome == .ok })
    for host in fleet.hosts.values {
      #expect(host.state.steps.allSatisfy { !$0.mutates }, "\(host.name)")
    }
  }

  @Test func upConvergesEveryHostAndASecondRunChangesNothing() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    let first = try await fleet.up()
    #expect(first.values.allSatisfy { $0.outcome == .changed })
    for host in fleet.hosts.values {
      #expect(host.state.differencesFromRecord == [], "\(host.name)")
    }
    #expect(fleet["bk1"].state.running.keys.sorted() == ["rsyncd@main"])
    #expect(fleet["nfs1"].state.running.keys.sorted() == ["watch@home:bk1:home"])
    #expect(fleet["nfs1"].state.sysctl["fs.inotify.max_user_watches"] == 1_048_576)
    #expect(FileManager.default.fileExists(atPath: fleet.dir + "/inv.secrets"))
    #expect(try PortBook.load(path: fleet.dir + "/inv.state.json").ports.count == 3)

    for host in fleet.hosts.values { host.heal() }
    let second = try await fleet.up()
    #expect(second.values.allSatisfy { $0.outcome == .ok })
    for host in fleet.hosts.values {
      #expect(host.state.steps.filter(\.mutates) == [], "\(host.name)")
    }
    #expect(fleet.unknownCommands == [])
  }

  @Test func oneFailingHostDoesNotStopTheOthersAndKeepsEverythingOnRecord() async throws {
    let fleet = try FakeFleet()
    fleet["nfs2"].failSteps { if case .start = $0 { true } else { false } }
    let reports = try await fleet.up()
    #expect(reports["nfs1"]?.outcome == .changed)
    #expect(reports["bk1"]?.outcome == .changed)
    let failure = try #require(reports["nfs2"]?.failure)
    #expect(failure.contains("starting watch@proj:bk1:proj"))
    // Its files were written and are all on the node's record, with the instance that did not start.
    let nfs2 = fleet["nfs2"].state
    #expect(nfs2.files[Layout.watchConf("proj:bk1:proj")] != nil)
    #expect(nfs2.offRecord == [])
    #expect(nfs2.manifest?.services["watch@proj:bk1:proj"] != nil)
    // The failed host keeps its ports in the book; the next run finishes the job.
    #expect(try PortBook.load(path: fleet.dir + "/inv.state.json").ports["nfs2/watch@proj:bk1:proj"] == 9700)
    fleet["nfs2"].heal()
    #expect(try await fleet.up()["nfs2"]?.outcome == .changed)
    #expect(fleet["nfs2"].state.differencesFromRecord == [])
  }

  @Test func anUnreachableBackupIsReportedThereAndItsWatchersAreNotWaitedFor() async throws {
    let fleet = try FakeFleet()
    let report = try await fleet.provisioner(unreachable: ["bk1"]).up()
    let byHost = Dictionary(uniqueKeysWithValues: report.hosts.map { ($0.host, $0) })
    #expect(byHost["bk1"]?.failure?.contains("no route to host") == true)
    #expect(byHost["nfs1"]?.outcome == .changed)
    #expect(byHost["nfs1"]?.waiting == ["watch@home:bk1:home"])
    #expect(!fleet["nfs1"].state.steps.contains(.health))
  }

  /// Defect (issue 8): every port problem of a host is shown, not only the last one found.
  @Test func everyPortErrorOfAHostIsShown() async throws {
    let yaml = """
      backups:
        bk1:
          address: 10.0.0.21
          daemons:
            a: { port: 8000, modules: { m1: /srv/backup/m1 } }
            b: { port: 8001, modules: { m2: /srv/backup/m2 } }
      sources:
        nfs1:
          address: 10.0.0.11
          directories:
            d1: { path: /srv/nfs/d1, to: [bk1/m1], health_port: 9000 }
            d2: { path: /srv/nfs/d2, to: [bk1/m2], health_port: 9001 }
      """
    let fleet = try FakeFleet(yaml)
    fleet["bk1"].change { $0.foreignPorts = [22, 8000, 8001] }
    fleet["nfs1"].change { $0.foreignPorts = [22, 9000, 9001] }
    let report = try await fleet.provisioner(yaml).up()
    let byHost = Dictionary(uniqueKeysWithValues: report.hosts.map { ($0.host, $0) })
    let bk1 = try #require(byHost["bk1"]?.failure)
    #expect(bk1.contains("port 8000 for rsyncd@a") && bk1.contains("port 8001 for rsyncd@b"))
    let nfs1 = try #require(byHost["nfs1"]?.failure)
    #expect(nfs1.contains("port 9000 for watch@d1:bk1:m1") && nfs1.contains("port 9001 for watch@d2:bk1:m2"))
    #expect(fleet["bk1"].state.steps.filter { $0 != .lease } == [.facts])
    #expect(fleet["nfs1"].state.steps.filter { $0 != .lease } == [.facts])
  }

  @Test func statusShowsEveryInstanceAndWhichOnesAreDown() async throws {
    let fleet = try FakeFleet(systemd: ["bk1"])
    _ = try await fleet.up()
    for host in fleet.hosts.values { host.heal() }
    fleet["nfs2"].change { $0.running = [:] }
    let hosts = try await fleet.provisioner().status()
    #expect(hosts.map(\.host) == ["nfs1", "nfs2", "bk1"])
    #expect(hosts.allSatisfy { $0.error == nil })
    let services = Dictionary(
      uniqueKeysWithValues: hosts.flatMap(\.services).map { ($0.service.description, $0) })
    #expect(services["rsyncd@main"]?.healthy == true && services["rsyncd@main"]?.port == 8730)
    #expect(services["watch@home:bk1:home"]?.healthy == true)
    let down = try #require(services["watch@proj:bk1:proj"])
    #expect(!down.running && !down.healthy && down.detail == "not running")
    #expect(fleet["bk1"].state.steps.filter(\.mutates).isEmpty)
    #expect(fleet.unknownCommands == [])
  }

  @Test func downRemovesWhatUpMadeAndRestoresSettings() async throws {
    let fleet = try FakeFleet(systemd: ["nfs2"])
    _ = try await fleet.up()
    let report = try await fleet.provisioner().down()
    #expect(report.hosts.allSatisfy { $0.outcome == .changed })
    for host in fleet.hosts.values {
      let state = host.state
      #expect(state.files.keys.filter(FakeRemoteHost.isManaged) == [], "\(host.name)")
      #expect(state.running.isEmpty)
      #expect(!state.directories.contains(Layout.etc))
      #expect(state.sysctl["fs.inotify.max_user_watches"] == 8192)
    }
    // Backup data stays.
    #expect(fleet["bk1"].state.directories.contains("/srv/backup/home"))
    #expect(try PortBook.load(path: fleet.dir + "/inv.state.json").ports.isEmpty)
    #expect(fleet.unknownCommands == [])
  }
}
