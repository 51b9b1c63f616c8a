import FleetTestSupport
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The tree comparison that metadata tests rely on (``TreeSnapshot``) must see every kind of loss.
@Suite(
  "Tree snapshots see owners, modes, ACLs, xattrs, hard links and holes", .enabled(if: isRoot && hasRsync))
struct TreeMetadataTests {
  @Test("the fixture holds every kind of metadata, and a snapshot reads it")
  func fixtureIsRich() throws {
    let tmp = try TempDir("fleet-tree")
    defer { tmp.remove() }
    let root = try tmp.sub("tree")
    try MetadataFixture.populate(root)
    let snapshot = try TreeSnapshot.capture(root)
    let e = snapshot.entries
    #expect(e["."]?.uid == 1239 && e["."]?.mode == 0o750)
    #expect(e["shared"]?.mode == 0o2775 && e["shared"]?.gid == 2346)
    #expect(e["data/tool"]?.mode == 0o4755)
    #expect(e["tmp"]?.mode == 0o1777)
    #expect(
      e["data/report.txt"]?.uid == 1234
        && e["data/report.txt"]?.xattrs["user.origin"] == Array("finance".utf8))
    #expect(e["acl"]?.accessACL == "user::rwx,user:1234:rwx,group::r-x,group:2345:r--,mask::rwx,other::---")
    #expect(e["acl"]?.defaultACL == "user::rwx,user:1234:r-x,group::r-x,mask::r-x,other::---")
    #expect(e["data/report.link"]?.kind == .symlink && e["data/report.link"]?.uid == 1243)
    #expect(e["data/pipe"]?.kind == .fifo && e["empty"]?.kind == .directory)
    #expect(snapshot.hardLinkSets == [MetadataFixture.hardLinks.sorted()])
    let sparse = try #require(e[MetadataFixture.sparseFile])
    #expect(sparse.allocatedBlocks * 512 < sparse.size / 2, "not sparse: \(sparse)")
    #expect(e["data/report.txt"]?.mtimeNanoseconds != 0)
  }

  @Test("a faithful copy shows no difference; each lost kind of metadata shows one")
  func differencesFound() throws {
    let tmp = try TempDir("fleet-tree")
    defer { tmp.remove() }
    let root = try tmp.sub("tree")
    try MetadataFixture.populate(root)
    let original = try TreeSnapshot.capture(root)
    let damages: [(String, (String) throws -> Void)] = [
      ("owner", { chown($0 + "/data/report.txt", 0, 2345) }),
      ("mode", { chmod($0 + "/shared", 0o775) }),
      ("xattr user.origin", { try shell("setfattr -x user.origin \($0)/data/report.txt") }),
      ("access ACL", { try shell("setfacl -x u:1234 \($0)/acl") }),
      ("default ACL", { try shell("setfacl -k \($0)/acl") }),
      (
        "hard-link sets",
        { try shell("cp -p \($0)/data/linked \($0)/x && mv \($0)/x \($0)/data/linked") }
      ),
      (
        "allocated blocks",
        {
          try shell(
            "cp -p --sparse=never \($0)/data/sparse.img \($0)/x; mv \($0)/x \($0)/data/sparse.img")
        }
      ),
      ("mtime", { try shell("touch -h -d @1 \($0)/data/report.link") }),
      ("sha256", { try shell("printf 'QUARTERLY numbers\\n' > \($0)/data/report.txt") }),
      ("missing", { try shell("rmdir \($0)/empty") }),
      ("kind", { try shell("rm \($0)/data/pipe && touch \($0)/data/pipe") }),
    ]
    for (index, (aspect, damage)) in damages.enumerated() {
      let copy = try tmp.sub("copy\(index)")
      try shell("rsync -aAXHS --numeric-ids \(root)/ \(copy)/")
      #expect(try TreeSnapshot.capture(copy).differences(from: original) == [], "rsync -aAXHS copy")
      try damage(copy)
      let found = try TreeSnapshot.capture(copy).differences(from: original)
      #expect(found.contains { $0.contains(aspect) }, "\(aspect) not seen: \(found)")
    }
  }
}
