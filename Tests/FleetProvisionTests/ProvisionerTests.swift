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
