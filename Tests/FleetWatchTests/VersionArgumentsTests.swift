import FleetCore
import FleetWire
import Foundation
import Testing

@testable import FleetWatch

/// The version arguments of every rsync run (`Rsync+Versions.swift`) and the STAMP format.
@Suite struct VersionArgumentsTests {
  let target = RsyncTarget(user: "u", host: "h", port: 873, module: "data")

  @Test func theStampIsTheRunsUTCStartToTheMillisecondAndSortsAsText() {
    #expect(
      VersionsLayout.stamp(Date(timeIntervalSince1970: 1_795_000_000.123_9)) == "2026-11-18T11-06-40.123Z")
    #expect(VersionsLayout.stamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00-00-00.000Z")
    let times = [0, 59.999, 60, 3_599.5, 86_400, 1_795_000_000].map { Date(timeIntervalSince1970: $0) }
    let stamps = times.map(VersionsLayout.stamp)
    #expect(stamps == stamps.sorted() && Set(stamps).count == stamps.count, "\(stamps)")
    #expect(!stamps.contains { $0.contains(":") })
  }

  @Test func everyRunProtectsTheVersionsAndOnlyRunsWithVersionsOnKeepThem() {
    var config = WatchConfig(source: "/src", target: target, stateDir: "/state")
    #expect(config.keepVersions == 0)
    let off = RsyncCommand(config: config)
    #expect(off.versionArguments() == ["--filter=P /.fleetsync-versions/"])
    for args in [off.fullArguments, off.listArguments("/l"), off.treeArguments("/l"), off.rootArguments] {
      #expect(args.contains("--filter=P /.fleetsync-versions/") && !args.contains("--backup"))
    }
    config.keepVersions = 7
    let on = RsyncCommand(config: config)
    let start = Date(timeIntervalSince1970: 1_795_000_000.5)
    #expect(
      on.versionArguments(now: start) == [
        "--filter=P /.fleetsync-versions/", "--backup",
        "--backup-dir=.fleetsync-versions/2026-11-18T11-06-40.500Z",
      ])
    for args in [on.fullArguments, on.listArguments("/l"), on.treeArguments("/l"), on.rootArguments] {
      #expect(
        args.contains("--backup") && args.contains { $0.hasPrefix("--backup-dir=.fleetsync-versions/") })
      // The filter comes before the excludes and endpoints: the first matching rule wins.
      #expect(args.suffix(2) == ["/src/", "rsync://u@h:873/data/"])
    }
  }
}
