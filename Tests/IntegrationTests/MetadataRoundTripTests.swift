import FleetTestSupport
import FleetWatch
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

extension WatchIntegration {
  /// Issue 10 §2: what the engine replicates to a `fake super` daemon that writes as `nobody` comes
  /// back, pulled through the daemon as a restore does, with every owner, mode, ACL, xattr, hard
  /// link and hole.
  @Suite("Metadata round trip through a fake-super daemon", .serialized, .enabled(if: isRoot && hasRsync))
  struct MetadataRoundTripTests {
    @Test("initial full sync, then live changes in batches: the pulled-back tree is identical")
    func roundTrip() async throws {
      let fixture = try EngineFixture(runAs: "nobody", fakeSuper: true)
      try MetadataFixture.populate(fixture.src)
      try await fixture.start()
      try await expectRoundTrip(fixture, "after the initial full sync")
      try expectMirrorKeptByNobody(fixture.daemon.backup)

      // Live changes: attributes only, new entries, a rewritten sparse file, all sent in batches.
      let src = fixture.src
      try shell(
        """
        cd \(src)
        chown 1301:2301 data/report.txt
        chmod 0604 shared/notes.md
        setfattr -n user.origin -v sales data/report.txt
        setfacl -m u:1302:r-x,g:2302:rwx acl/plan.txt
        mkdir shared/new && chown 1303:2346 shared/new && chmod 2750 shared/new
        printf 'new\\n' > shared/new/file && chown -h 1304:2304 shared/new/file
        setfattr -n user.note -v fresh shared/new/file
        ln -s ../data shared/new/to-data && chown -h 1305:2305 shared/new/to-data
        truncate -s 4M data/second.img && printf tail >> data/second.img && chown 1306:2306 data/second.img
        touch -d '2021-03-04 05:06:07.987654321' data/report.txt
        """)
      try await expectRoundTrip(fixture, "after live changes")
      let before = fixture.engine.status().fullSyncs

      // A new name for an existing file: a batch sends it as a file of its own (-H links only
      // what one run sends); the next full sync links the set again on the backup.
      try shell("ln \(src)/data/report.txt \(src)/shared/report-link")
      try await waitForIdle(fixture.engine)
      fixture.engine.requestFullSync()
      #expect(try await eventually { fixture.engine.status().fullSyncs > before })
      try await expectRoundTrip(fixture, "after a full sync with a new hard link")
      #expect(fixture.engine.status().senderConfined == true, "the sender must read ACLs and xattrs confined")
      try await fixture.stop()
    }

    /// Waits until pulling the module back gives a tree identical to the source.
    func expectRoundTrip(
      _ fixture: EngineFixture, _ when: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
      let expected = { try TreeSnapshot.capture(fixture.src) }
      var last: [String] = []
      let identical = try await eventually {
        try await waitForIdle(fixture.engine)
        last = try fixture.daemon.roundTripDifferences(expected(), scratch: fixture.tmp)
        return last.isEmpty
      }
      #expect(identical, "\(when): the pulled-back tree differs: \(last)", sourceLocation: sourceLocation)
    }

    /// The mirror itself is the daemon's (`nobody`); owners, modes and ACLs live in `user.rsync.*`
    /// xattrs, and the sparse file takes less room than its size.
    func expectMirrorKeptByNobody(_ backup: String) throws {
      let mirror = try TreeSnapshot.capture(backup)
      let nobody = try #require(getpwnam("nobody")).pointee.pw_uid
      let report = try #require(mirror.entries["data/report.txt"])
      #expect(report.uid == nobody)
      #expect(report.xattrs["user.rsync.%stat"] == Array("100640 0,0 1234:2345".utf8))
      #expect(report.xattrs["user.origin"] == Array("finance".utf8))
      #expect(mirror.entries["acl"]?.xattrs["user.rsync.%aacl"] != nil)
      #expect(mirror.entries["acl"]?.xattrs["user.rsync.%dacl"] != nil)
      let sparse = try #require(mirror.entries[MetadataFixture.sparseFile])
      #expect(sparse.allocatedBlocks * 512 < sparse.size / 2, "the backup's copy is not sparse: \(sparse)")
      #expect(mirror.hardLinkSets == [MetadataFixture.hardLinks.sorted()])
    }
  }
}

/// Waits until the engine has nothing queued or in flight and its initial sync is over.
func waitForIdle(_ engine: WatchEngine) async throws {
  let idle = try await eventually {
    let s = engine.status()
    return s.queueDepth == 0 && s.inFlight == 0 && s.state != .starting && s.state != .initialSync
  }
  if !idle { throw WaitTimeout(what: "the engine to be idle: \(engine.status())") }
}
