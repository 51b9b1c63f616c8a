import Foundation
import Testing

@testable import FleetWatch

#if canImport(Glibc)
  import Glibc
#endif

/// The source guard remembers filesystem types by device only until the mount table changes.
@Suite("Filesystem types are forgotten when the mount table changes", .enabled(if: isRoot))
struct MountTypesTests {
  @Test func aMountMakesRememberedTypesForgotten() throws {
    let tmp = try TempDir()
    defer { tmp.remove() }
    let types = MountTypes()
    #expect(types.type(of: 7) { "before" } == "before")
    let mount = try TestMount.tmpfs(on: try tmp.sub("mnt"))
    defer { try? mount.unmount() }
    // A device number freed by an unmount may be reused by another filesystem: never a stale answer.
    #expect(types.type(of: 7) { "after" } == "after")
  }
}
