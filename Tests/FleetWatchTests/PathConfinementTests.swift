import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// Listed paths never lead rsync through a symlink or a file (issue 9 §3), on real files.
@Suite("Path confinement")
struct PathConfinementTests {
  /// A source with `real/dir/file`, `link -> <outside>`, `file` (a regular file) and an outside
  /// directory holding `shadow`.
  final class Source {
    let root: String
    let src: String
    let outside: String

    init() throws {
      root = try makeTempDir()
      src = root + "/src"
      outside = root + "/outside"
      let fm = FileManager.default
      try fm.createDirectory(atPath: src + "/real/dir", withIntermediateDirectories: true)
      try fm.createDirectory(atPath: outside + "/sub", withIntermediateDirectories: true)
      try Data("in".utf8).write(to: URL(fileURLWithPath: src + "/real/dir/file"))
      try Data("secret".utf8).write(to: URL(fileURLWithPath: outside + "/shadow"))
      try Data("a file".utf8).write(to: URL(fileURLWithPath: src + "/file"))
      try fm.createSymbolicLink(atPath: src + "/link", withDestinationPath: outside)
      try fm.createSymbolicLink(atPath: src + "/real/inner-link", withDestinationPath: outside)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func check(_ paths: [SyncPath]) -> (paths: [SyncPath], replaced: [PathConfinement.Replacement]) {
      PathConfinement(source: src).check(paths)
    }
  }

  @Test func pathsThroughRealDirectoriesAreSentAsListed() throws {
    let s = try Source()
    let listed = [SyncPath.root, entry("real/dir/file"), tree("real/dir"), entry("real"), entry("link")]
    let (paths, replaced) = s.check(listed)
    #expect(paths == listed)
    #expect(replaced.isEmpty)
  }

  @Test func aPathBeneathASymlinkIsSentAsTheSymlink() throws {
    let s = try Source()
    let (paths, replaced) = s.check([
      entry("link/shadow"), entry("real/inner-link/sub/x"), entry("real/dir/file"),
    ])
    #expect(paths == [entry("link"), entry("real/inner-link"), entry("real/dir/file")])
    #expect(replaced.map(\.listed) == [entry("link/shadow"), entry("real/inner-link/sub/x")])
  }

  @Test func aTreeBeneathASymlinkIsSentAsTheSymlinkByItself() throws {
    let s = try Source()
    #expect(s.check([tree("link/sub")]).paths == [entry("link")])
  }

  @Test func aPathBeneathAFileIsSentAsTheFile() throws {
    let s = try Source()
    #expect(s.check([entry("file/x/y")]).paths == [entry("file")])
  }

  @Test func theReplacementIsListedOnceAndKeepsItsPlace() throws {
    let s = try Source()
    let (paths, replaced) = s.check([
      entry("a-first"), entry("link/shadow"), entry("link/sub"), entry("link"),
    ])
    #expect(paths == [entry("a-first"), entry("link")])
    #expect(replaced.count == 2)
  }

  @Test func aPathBeneathAMissingDirectoryIsLeftToRsync() throws {
    let s = try Source()
    #expect(
      s.check([entry("gone/x"), entry("real/gone/x")]).paths == [entry("gone/x"), entry("real/gone/x")])
  }

  @Test func theTopmostSymlinkWins() throws {
    let s = try Source()
    // link -> outside, and outside/sub is a directory: only `link` is examined and sent.
    #expect(s.check([entry("link/sub/deeper")]).paths == [entry("link")])
  }
}
