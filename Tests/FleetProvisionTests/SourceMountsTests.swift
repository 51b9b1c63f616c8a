import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// Issue 9 §1: a watcher under systemd needs its source's filesystem (`RequiresMountsFor=`).
@Suite struct SourceMountsTests {
  func render(systemd: Bool) throws -> DesiredHost {
    let inventory = try Inventory.parse(yaml: fakeInventory, file: "/tmp/inv.yaml")
    var ports = PortBook()
    #expect(ports.assign(inventory, facts: [:]).isEmpty)
    let context = RenderContext(
      inventory: inventory, ports: ports, secrets: ["bk1/home": Secret("s"), "bk1/proj": Secret("t")],
      watchBinary: ("/bin/true", "abc"))
    let current = [
      "fs.inotify.max_user_watches": 8192, "fs.inotify.max_user_instances": 128,
      "fs.inotify.max_queued_events": 16384,
    ]
    return try Renderer.source(
      inventory.sources[0], context: context, systemd: systemd, currentSysctl: current, manifest: nil)
  }

  @Test func eachWatcherInstanceGetsADropInNamingItsSource() throws {
    let desired = try render(systemd: true)
    let path = Layout.watchSourceDropIn("home:bk1:home")
    #expect(path == "/etc/systemd/system/fleetsync-watch@home:bk1:home.service.d/fleetsync-source.conf")
    let file = try #require(desired.files.first { $0.path == path })
    guard case .bytes(let bytes) = file.content else {
      Issue.record("not bytes")
      return
    }
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.hasSuffix("[Unit]\nRequiresMountsFor=\"/srv/nfs/home\"\n"))
    #expect(desired.directories.contains { $0.path + "/fleetsync-source.conf" == path && !$0.data })
    // The template names fleetsync's own directories; the drop-in the source.
    #expect(Units.watch.contains("\nRequiresMountsFor=/var/lib/fleetsync /etc/fleetsync\n"))
  }

  @Test func withoutSystemdThereIsNoDropIn() throws {
    let desired = try render(systemd: false)
    #expect(!desired.files.contains { $0.path.hasSuffix("fleetsync-source.conf") })
  }

  @Test func aPathIsOneQuotedWordWithoutSpecifiers() {
    let text = Units.sourceMounts(#"/srv/a b%i"q\z"#)
    #expect(text.hasSuffix(#"RequiresMountsFor="/srv/a b%%i\"q\\z""# + "\n"))
  }
}
