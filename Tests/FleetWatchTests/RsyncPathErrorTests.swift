import Testing

@testable import FleetWatch

/// Exit 23's stderr, as rsync 3.x prints it (lines captured from real runs against a daemon).
@Suite("Reading the failing paths from rsync's stderr")
struct RsyncPathErrorTests {
  static let target = RsyncTarget(user: "u", host: "h", module: "m")
  static let subTarget = RsyncTarget(user: "u", host: "h", module: "m", subdir: "sub")

  static func locations(_ stderr: String, target: RsyncTarget = target, complete: Bool = true)
    -> [RsyncPathError.Location]
  {
    RsyncPathError.parse(stderr: stderr, complete: complete, source: "/srv/data", target: target).map(
      \.location)
  }

  @Test func receiverAndSenderLinesNameTheirSourcePaths() {
    let stderr = """
      rsync: [generator] failed to set times on "." (in m): Operation not permitted (1)
      rsync: [generator] recv_generator: mkdir "ok" (in m) failed: Permission denied (13)
      *** Skipping any contents from this failed directory ***
      rsync: [receiver] mkstemp ".top.upGmcP" (in m) failed: Permission denied (13)
      rsync: [receiver] mkstemp "blocked/.f.IaZpC9" (in m) failed: Permission denied (13)
      rsync: [sender] send_files failed to open "/srv/data/we ird/a"b": Permission denied (13)
      rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1394) [sender=3.5.0]
      """
    #expect(
      Self.locations(stderr) == [
        .root, .path(rel("ok"), orTempFor: nil), .path(rel(".top.upGmcP"), orTempFor: rel("top")),
        .path(rel("blocked/.f.IaZpC9"), orTempFor: rel("blocked/f")),
        .path(rel("we ird/a\"b"), orTempFor: nil),
      ])
  }

  @Test func aTargetSubdirectoryIsStrippedAndEscapesAreUndone() {
    let stderr = """
      rsync: [generator] failed to set times on "/sub/blocked" (in m): Operation not permitted (1)
      rsync: [receiver] mkstemp "/sub/new\\#012line/.f.Qy4COk" (in m) failed: Permission denied (13)
      rsync: [generator] failed to set times on "/sub" (in m): Operation not permitted (1)
      rsync: [generator] failed to set times on "/other/x" (in m): Operation not permitted (1)
      """
    #expect(
      Self.locations(stderr, target: Self.subTarget) == [
        .path(rel("blocked"), orTempFor: nil),
        .path(rel("new\nline/.f.Qy4COk"), orTempFor: rel("new\nline/f")),
        .root, .unknown,
      ])
  }

  /// A failed rename of a received file into place names the file after `->`, relative to the
  /// destination (a real run's line, a daemon with a `temp dir` and the module's directory owned by
  /// root); a name in the versions directory names no source path.
  @Test func aFailedRenameNamesTheFile() {
    let stderr = """
      rsync: [receiver] rename "/.fleetsync-versions/.tmp/seed.Mu6B7G" (in m) -> "seed": Permission denied (13)
      rsync: [receiver] rename "/.fleetsync-versions/.tmp/b.Lem2a3" (in m) -> "a dir/b": Permission denied (13)
      rsync: [receiver] mkstemp "/.fleetsync-versions/.tmp/c.Qy4COk" (in m) failed: No space left on device (28)
      """
    #expect(
      Self.locations(stderr) == [
        .path(rel("seed"), orTempFor: nil), .path(rel("a dir/b"), orTempFor: nil), .unknown,
      ])
    #expect(
      Self.locations(
        #"rsync: [receiver] rename "/.fleetsync-versions/.tmp/f.Mu6B7G" (in m) -> "d/f": Permission denied (13)"#,
        target: Self.subTarget) == [.path(rel("d/f"), orTempFor: nil)], "relative to the sub-directory")
  }

  @Test func withoutANamedPathOrWithStderrCutTheErrorsAreNotTheWholeStory() {
    #expect(Self.locations("rsync error: some files/attrs were not transferred (code 23)") == [.unknown])
    let cut = Self.locations(
      "rsync: [sender] send_files failed to open \"/srv/data/a\": Permission denied (13)", complete: false)
    #expect(cut == [.path(rel("a"), orTempFor: nil), .unknown])
    // A sender path outside the source names nothing in it.
    #expect(Self.locations("rsync: [sender] send_files failed to open \"/etc/shadow\": x (13)") == [.unknown])
  }

  @Test func exit23IsIncompleteAndExit24StillPartial() {
    let stderr = "rsync: [receiver] mkstemp \"d/.f.Ab12Cd\" (in m) failed: Permission denied (13)\n"
    let outcome = RsyncCommand.classify(
      exitCode: 23, stdout: "", stderr: stderr, target: Self.target, source: "/s")
    guard case .incomplete(let errors, let message) = outcome else {
      Issue.record("exit 23 is \(outcome)")
      return
    }
    #expect(errors.map(\.location) == [.path(rel("d/.f.Ab12Cd"), orTempFor: rel("d/f"))])
    #expect(message.contains("rsync exit 23") && message.contains("mkstemp"))
    #expect(!outcome.isFailure && outcome.errorKind == .partial)
    guard
      case .partial(24, _) = RsyncCommand.classify(exitCode: 24, stdout: "", stderr: "", target: Self.target)
    else {
      Issue.record("exit 24 is no longer partial")
      return
    }
  }
}
