import FleetCore
import FleetInventory
import Foundation
import Testing

@testable import FleetProvision

/// How `restore` and `versions` read their arguments and the backup's listings, and what they decide
/// to lay over the mirror.
@Suite struct RestorePlanTests {
  let inventory: Inventory

  init() throws {
    inventory = try Inventory.parse(
      yaml: """
        backups:
          bk1:
            address: 10.0.0.21
            daemons: { main: { modules: { home: /b/home, home2: /b/home2, team: /b/team } } }
        sources:
          nfs1:
            address: 10.0.0.11
            directories:
              home: { path: /srv/nfs/home, to: [bk1/home, bk1/home2] }
              team: { path: /srv/nfs/team, to: [bk1/team] }
        """, file: "inv.yaml")
  }

  @Test func hostPathsAreCheckedAndNormalized() throws {
    #expect(try HostPath(parsing: "nfs1:/srv//nfs/./home/") == HostPath(unchecked: "nfs1", "/srv/nfs/home"))
    for bad in ["/srv/nfs", "nfs1:srv/nfs", ":/srv", "nfs1:/srv/../etc"] {
      #expect(throws: FleetError.self) { try HostPath(parsing: bad) }
    }
  }

  @Test func aPathResolvesToItsProtectedDirectoryAndModule() throws {
    let place = try inventory.protectedPlace(HostPath(parsing: "nfs1:/srv/nfs/team/a/b.txt"))
    #expect(place.directory.name == "team" && place.sub == "a/b.txt" && place.instance == "team:bk1:team")
    let other = try inventory.protectedPlace(HostPath(parsing: "nfs1:/srv/nfs/home/x"), from: "bk1/home2")
    #expect(other.directory.name == "home" && other.sub == "x" && other.destination.module == "home2")
    #expect(try inventory.protectedPlace(HostPath(parsing: "nfs1:/srv/nfs/home")).sub == "")
    let outside = #expect(throws: FleetError.self) {
      try inventory.protectedPlace(HostPath(parsing: "nfs1:/srv/nfs/homework/x"))
    }
    #expect(outside?.message.contains("not under a protected directory") == true)
    #expect(throws: FleetError.self) {
      try inventory.protectedPlace(HostPath(parsing: "bk1:/srv/backup/home"))
    }
    #expect(throws: FleetError.self) {
      try inventory.protectedPlace(HostPath(parsing: "nfs1:/srv/nfs/home/x"), from: "bk1/other")
    }
  }

  @Test func timesReadAsISO8601OrAsAStampAndSortLikeStamps() throws {
    let iso = try RestoreTime(parsing: "2026-11-28T01:05:01.250+01:00")
    #expect(iso.stamp == "2026-11-28T00-05-01.250Z")
    #expect(try RestoreTime(parsing: "2026-11-28T00-05-01.250Z") == iso)
    #expect(try RestoreTime(parsing: "2026-11-28T00:05:01Z").stamp == "2026-11-28T00-05-01.000Z")
    #expect(iso.description == "2026-11-28T00:05:01.250Z" && iso.epochArgument == "@1795824301.250")
    for bad in ["yesterday", "2026-11-28 00:05:01", "2 hours ago", "2026-11-28T00-05-01Z"] {
      #expect(throws: FleetError.self) { try RestoreTime(parsing: bad) }
    }
  }

  @Test func filtersKeepOnlyThePathInEveryStampWithWildcardsEscaped() {
    #expect(
      BackupReader.filters(sub: "a*/b", recursive: true) == [
        "--include=/*/", "--include=/*/a\\*/", "--include=/*/a\\*/b", "--include=/*/a\\*/b/***",
        "--exclude=*",
      ])
    #expect(BackupReader.filters(sub: "", recursive: false) == ["--include=/*/", "--exclude=*"])
  }

  @Test func listingsParseIntoEntriesOfTheirStamp() {
    let listing = """
      drwxr-xr-x           4096 2026/11/28 00:03:59 .
      drwxr-xr-x           4096 2026/11/28 00:03:59 2026-11-28T00-05-01.123Z
      drwxr-xr-x           4096 2026/11/28 00:03:47 2026-11-28T00-05-01.123Z/docs
      -rw-r--r--              9 2026/11/28 00:03:47 2026-11-28T00-05-01.123Z/docs/a b.txt
      lrwxrwxrwx              5 2026/11/28 00:03:47 2026-11-28T00-05-01.123Z/docs/l -> a b.txt
      -rw-r--r--              3 2026/11/28 00:03:47 2026-11-28T00-05-01.123Z/docsx
      drwxr-xr-x           4096 2026/11/28 00:03:59 .hold-x
      """
    let entries = BackupReader.versionEntries(listing, sub: "docs")
    #expect(entries.map(\.path) == ["docs", "docs/a b.txt", "docs/l"])
    #expect(entries.map(\.kind) == ["directory", "file", "symlink"] && entries[1].size == 9)
    #expect(BackupReader.versionEntries(listing, sub: "").first?.path == "")
    #expect(BackupReader.stampsHolding(entries, sub: "docs").map(\.stamp) == ["2026-11-28T00-05-01.123Z"])
  }

  @Test func theOldestVersionAfterTheTimeWinsAndDecidesTheKind() throws {
    let at = try RestoreTime(parsing: "2026-11-28T00-05-00.000Z")
    let held = [
      ("2026-11-28T00-04-00.000Z", "file"), ("2026-11-28T00-06-00.000Z", "file"),
      ("2026-11-28T00-07-00.000Z", "file"),
    ]
    let content = BackupContent.decide(mirrorKind: "file", held: held.map { ($0.0, $0.1) }, at: at)
    #expect(
      content
        == BackupContent(
          fromMirror: true, overlays: ["2026-11-28T00-07-00.000Z", "2026-11-28T00-06-00.000Z"],
          isDirectory: false))
    // A file replaced by a directory after the time: the version (a file) wins; the mirror is not used.
    let replaced = BackupContent.decide(
      mirrorKind: "directory", held: [("2026-11-28T00-06-00.000Z", "file")], at: at)
    #expect(
      replaced == BackupContent(fromMirror: false, overlays: ["2026-11-28T00-06-00.000Z"], isDirectory: false)
    )
    #expect(BackupContent.decide(mirrorKind: nil, held: held.map { ($0.0, $0.1) }, at: nil) == nil)
    #expect(BackupContent.decide(mirrorKind: "directory", held: [], at: nil)?.isDirectory == true)
  }
}
