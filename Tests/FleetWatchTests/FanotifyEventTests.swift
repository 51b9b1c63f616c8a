import CFanotify
import Testing

@testable import FleetWatch

/// Bytes of one event as the kernel lays them out (see ``FanotifyEvent``).
private func eventBytes(mask: UInt64, records: [(type: UInt8, handle: [UInt8], name: [UInt8]?)]) -> [UInt8] {
  func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
  var body: [UInt8] = []
  for r in records {
    var record: [UInt8] = [UInt8](repeating: 0, count: 8)  // fsid
    record += le(UInt32(r.handle.count)) + le(Int32(1)) + r.handle
    if let name = r.name { record += name + [0] }
    while record.count % 4 != 0 { record.append(0) }
    body += [r.type, 0] + le(UInt16(4 + record.count)) + record
  }
  let length = 24 + body.count
  return le(UInt32(length)) + [3, 0] + le(UInt16(24)) + le(mask) + le(Int32(-1)) + le(Int32(42)) + body
}

@Suite("fanotify: events decoded, directory handles placed in the source")
struct FanotifyEventTests {
  @Test func eventsWithADirectoryHandleAndANameAreDecoded() {
    let handle: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
    let created = eventBytes(
      mask: FLEET_FAN_CREATE | FLEET_FAN_ONDIR,
      records: [(FLEET_FAN_INFO_DFID_NAME, handle, Array("new dir".utf8))])
    let itself = eventBytes(
      mask: FLEET_FAN_ATTRIB | FLEET_FAN_ONDIR, records: [(FLEET_FAN_INFO_DFID_NAME, handle, Array(".".utf8))]
    )
    let overflow = eventBytes(mask: FLEET_FAN_Q_OVERFLOW, records: [])
    let all = created + itself + overflow
    let events = all.withUnsafeBytes { FanotifyEvent.parse($0) }
    #expect(events.count == 3)
    // The handle as fleet_open_handle takes it: handle_bytes, handle_type, the bytes.
    let full: [UInt8] = [8, 0, 0, 0, 1, 0, 0, 0] + handle
    #expect(
      events[0]
        == FanotifyEvent(
          mask: FLEET_FAN_CREATE | FLEET_FAN_ONDIR, directory: full, name: Array("new dir".utf8)))
    #expect(events[0].isDirectory && !events[0].isOnDirectoryItself && !events[0].isOverflow)
    #expect(events[1].isOnDirectoryItself && events[1].directory == full)
    #expect(events[2].isOverflow && events[2].directory.isEmpty)
  }

  @Test func aTruncatedEventIsLeftForTheNextRead() {
    let one = eventBytes(
      mask: FLEET_FAN_CLOSE_WRITE, records: [(FLEET_FAN_INFO_DFID_NAME, [9, 9, 9, 9], Array("f".utf8))])
    let cut = one + Array(one.prefix(30))
    #expect(cut.withUnsafeBytes { FanotifyEvent.parse($0) }.count == 1)
    // A record that claims more than its event holds is ignored, not read past.
    var bad = one
    bad[24 + 2] = 0xFF
    let events = bad.withUnsafeBytes { FanotifyEvent.parse($0) }
    #expect(events.count == 1 && events[0].directory.isEmpty)
  }

  @Test func directoriesArePlacedByTheirPathNow() {
    let root = Array("/srv/data".utf8)
    #expect(FanotifyPaths.place(of: root, root: root) == .inside([]))
    #expect(FanotifyPaths.place(of: Array("/srv/data/a/b".utf8), root: root) == .inside(Array("a/b".utf8)))
    #expect(FanotifyPaths.place(of: Array("/srv/data2/a".utf8), root: root) == .outside)
    #expect(FanotifyPaths.place(of: Array("/srv".utf8), root: root) == .outside)
    #expect(FanotifyPaths.place(of: Array("/other".utf8), root: root) == .outside)
    #expect(FanotifyPaths.place(of: Array("/x/y".utf8), root: Array("/".utf8)) == .inside(Array("x/y".utf8)))
  }
}
