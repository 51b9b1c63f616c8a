import Subprocess

/// The last bytes of a subprocess's output stream, however much it prints.
///
/// rsync prints without bound in some runs (a line per vanished or unreadable file), while what the
/// engine reads is at the end: the `--stats` summary and the final error lines. Keeping only the
/// tail bounds memory and never fails a run because it talked a lot.
struct OutputTail: Sendable {
  /// The most bytes kept.
  let capacity: Int
  private var kept: [UInt8] = []
  /// Bytes dropped from the front so far.
  private(set) var dropped = 0

  init(capacity: Int) {
    self.capacity = max(1, capacity)
  }

  /// Adds `chunk`, dropping the oldest bytes beyond ``capacity``.
  mutating func append(_ chunk: UnsafeRawBufferPointer) {
    kept.append(contentsOf: chunk)
    // Trim in steps of at least `capacity`, so appending stays linear in what is read.
    if kept.count >= 2 * capacity {
      let excess = kept.count - capacity
      kept.removeFirst(excess)
      dropped += excess
    }
  }

  /// The kept bytes: at most ``capacity``, starting at a line boundary when earlier bytes were dropped.
  var bytes: ArraySlice<UInt8> {
    let excess = max(0, kept.count - capacity)
    var tail = kept[excess...]
    if dropped + excess > 0, let newline = tail.firstIndex(of: UInt8(ascii: "\n")) {
      tail = tail[tail.index(after: newline)...]
    }
    return tail
  }

  /// ``bytes`` as text (invalid UTF-8 repaired).
  var text: String { String(decoding: bytes, as: UTF8.self) }

  /// Reads `stream` to its end, keeping the last `capacity` bytes.
  static func collect(_ stream: SubprocessOutputSequence, capacity: Int) async throws -> OutputTail {
    var tail = OutputTail(capacity: capacity)
    for try await buffer in stream {
      buffer.withUnsafeBytes { tail.append($0) }
    }
    return tail
  }
}
