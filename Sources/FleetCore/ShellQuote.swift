/// Quoting for POSIX `sh`: turns arbitrary data into words a remote shell treats as data.
///
/// Every value is single-quoted, so spaces, quotes, `$()`, backticks, globs and newlines stay
/// literal. A leading dash is data to the shell but an option to most commands: build argument
/// lists with `--` before paths, or use ``ShellQuote/path(_:)``. NUL cannot be passed through a
/// shell word at all, so it is refused.
public enum ShellQuote {
  /// Quotes one word.
  ///
  /// - Throws: ``FleetError`` with code ``FleetError/Code/invalidInput`` if it contains NUL.
  public static func quote(_ word: String) throws -> String {
    try quote(bytes: Array(word.utf8))
  }

  /// Quotes one word given as raw bytes (file names need not be UTF-8).
  ///
  /// The result is bytes, because the word may not be valid UTF-8.
  public static func quote(bytes: [UInt8]) throws -> [UInt8] {
    if bytes.contains(0) {
      throw FleetError(.invalidInput, "a shell word cannot contain a NUL byte")
    }
    var out: [UInt8] = [UInt8(ascii: "'")]
    out.reserveCapacity(bytes.count + 2)
    for b in bytes {
      if b == UInt8(ascii: "'") {
        // close quote, escaped quote, reopen: '\''
        out.append(contentsOf: [0x27, 0x5C, 0x27, 0x27])
      } else {
        out.append(b)
      }
    }
    out.append(UInt8(ascii: "'"))
    return out
  }

  /// Quotes bytes that are valid UTF-8 and returns a String.
  static func quote(bytes: [UInt8]) throws -> String {
    let quoted: [UInt8] = try quote(bytes: bytes)
    return String(decoding: quoted, as: UTF8.self)
  }

  /// Quotes a path so a command cannot mistake it for an option: a relative path starting with
  /// `-` is prefixed with `./`.
  public static func path(_ path: String) throws -> String {
    if path.hasPrefix("-") { return try quote("./" + path) }
    return try quote(path)
  }

  /// Joins quoted words into one command line: `command(["rm", "-f", "--", p])`.
  public static func command(_ argv: [String]) throws -> String {
    try argv.map { try quote($0) }.joined(separator: " ")
  }
}
