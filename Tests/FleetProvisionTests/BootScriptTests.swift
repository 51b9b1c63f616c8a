import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// Hosts without systemd: `up` installs and enables the boot script that brings the instances back
/// after a reboot, `down` disables and removes it; the real script is tried on the test fleet
/// (`IntegrationTests/NonSystemdRestartTests`).
@Suite struct BootScriptTests {
  @Test func upEnablesTheBootScriptAndDownRemovesIt() async throws {
    let fleet = try FakeFleet(systemd: ["nfs2"])
    let reports = try await fleet.up()
    #expect(reports.values.allSatisfy { $0.failure == nil }, "\(reports.mapValues(\.failure))")
    for name in ["nfs1", "bk1"] {
      let node = fleet[name].state
      #expect(node.files[Layout.bootScript] == Array(try PidFileServices.bootScript().utf8), "\(name)")
      #expect(node.bootEnabled, "\(name)")
      #expect(node.manifest?.files[Layout.bootScript] != nil, "\(name)")
      // Enabled after the instances were started, so a host without update-rc.d still runs them.
      let steps = node.steps
      let enabled = try #require(steps.firstIndex(of: .bootScript(enabled: true)))
      #expect(steps[..<enabled].contains { if case .start = $0 { true } else { false } })
    }
    // A systemd host has units instead.
    #expect(fleet["nfs2"].state.files[Layout.bootScript] == nil)
    #expect(!fleet["nfs2"].state.bootEnabled)
    #expect(fleet.unknownCommands.isEmpty, "\(fleet.unknownCommands)")

    _ = try await fleet.provisioner().down()
    for name in ["nfs1", "bk1"] {
      let node = fleet[name].state
      #expect(!node.bootEnabled, "\(name)")
      #expect(node.files[Layout.bootScript] == nil, "\(name)")
      let steps = node.steps
      let disabled = try #require(steps.lastIndex(of: .bootScript(enabled: false)))
      let removed = try #require(
        steps.lastIndex {
          if case .remove(let paths) = $0 { paths.contains(Layout.bootScript) } else { false }
        })
      #expect(disabled < removed, "the links go before the script")
    }
    #expect(fleet.unknownCommands.isEmpty, "\(fleet.unknownCommands)")
  }

  /// The boot script starts the instances with the very commands `up` uses (one policy), and the
  /// watcher's supervisor with its health check.
  @Test func theBootScriptStartsInstancesAsUpDoes() throws {
    let script = try PidFileServices.bootScript()
    #expect(script.hasPrefix("#!/bin/sh\n### BEGIN INIT INFO\n"))
    #expect(script.contains("# Required-Start:    $remote_fs"))
    #expect(script.contains(PidFileServices.startRsyncd(pid: "\"$pid\"", log: "\"$log\"", conf: "\"$conf\"")))
    #expect(
      script.contains(try PidFileServices.startWatch(pid: "\"$pid\"", log: "\"$log\"", conf: "\"$conf\"")))
    #expect(Units.supervisor.contains(#""$watcher" check --config "$config""#))
  }
}
