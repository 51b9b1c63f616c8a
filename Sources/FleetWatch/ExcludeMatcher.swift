/// rsync-style exclude patterns, matched against paths relative to the source (as bytes).
///
/// Supported: `*` (not across `/`), `**` (across `/`), `?`, `[...]` classes, a leading `/`
/// (anchored at the source root), a trailing `/` (directories only). A pattern without `/`
/// matches any single path component; one with `/` matches the end of the path at a component
/// boundary. A path is excluded if it or any of its parent directories matches, as rsync would
/// not descend into an excluded directory.
public struct ExcludeMatcher: Sendable {
  struct Pattern: Sendable {
    var glob: [UInt8]
    var anchored: Bool
    var dirOnly: Bool
    var wholePath: Bool
  }

  let patterns: [Pattern]

  /// Compiles `patterns`; empty patterns are ignored.
  public init(_ patterns: [String]) {
    var out: [Pattern] = []
    for p in patterns {
      var g = Array(p.utf8)
      var dirOnly = false
      while g.count > 1 && g.last == UInt8(ascii: "/") {
        g.removeLast()
        dirOnly = true
      }
      var anchored = false
      if g.first == UInt8(ascii: "/") {
        anchored = true
        g.removeFirst()
      }
      guard !g.isEmpty else { continue }
      let wholePath = anchored || g.contains(UInt8(ascii: "/")) || Self.hasDoubleStar(g)
      out.append(Pattern(glob: g, anchored: anchored, dirOnly: dirOnly, wholePath: wholePath))
    }
    self.patterns = out
  }

  /// Whether there is nothing to exclude.
  public var isEmpty: Bool { patterns.isEmpty }

  /// Whether `path` (relative, `/`-separated, no leading slash) is excluded.
  ///
  /// `isDirectory` says whether the last component is a directory; parents always are.
  public func isExcluded(_ path: [UInt8], isDirectory: Bool) -> Bool {
    if patterns.isEmpty || path.isEmpty { return false }
    var end = 0
    while end <= path.count {
      if end == path.count || path[end] == UInt8(ascii: "/") {
        let isLast = end == path.count
        if matchesPrefix(path[0..<end], isDirectory: isLast ? isDirectory : true) { return true }
      }
      end += 1
    }
    return false
  }

  /// Whether the single path `prefix` (all of it) matches some pattern.
  func matchesPrefix(_ prefix: ArraySlice<UInt8>, isDirectory: Bool) -> Bool {
    for p in patterns {
      if p.dirOnly && !isDirectory { continue }
      if p.anchored {
        if Self.glob(p.glob[...], prefix) { return true }
      } else if p.wholePath {
        // Try every component boundary as a start.
        var start = prefix.startIndex
        while true {
          if Self.glob(p.glob[...], prefix[start...]) { return true }
          guard let slash = prefix[start...].firstIndex(of: UInt8(ascii: "/")) else { break }
          start = slash + 1
        }
      } else {
        let lastStart = (prefix.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 }) ?? prefix.startIndex
        if Self.glob(p.glob[...], prefix[lastStart...]) { return true }
      }
    }
    return false
  }

  static func hasDoubleStar(_ g: [UInt8]) -> Bool {
    var i = 0
    while i + 1 < g.count {
      if g[i] == UInt8(ascii: "*") && g[i + 1] == UInt8(ascii: "*") { return true }
      i += 1
    }
    return false
  }

  /// Glob match of `pattern` against all of `text`.
  static func glob(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
    var p = pattern.startIndex
    var t = text.startIndex
    while p < pattern.endIndex {
      let c = pattern[p]
      switch c {
      case UInt8(ascii: "*"):
        let double = p + 1 < pattern.endIndex && pattern[p + 1] == UInt8(ascii: "*")
        let rest = pattern[(double ? p + 2 : p + 1)...]
        var k = t
        while true {
          if glob(rest, text[k...]) { return true }
          if k == text.endIndex { return false }
          if !double && text[k] == UInt8(ascii: "/") { return false }
          k += 1
        }
      case UInt8(ascii: "?"):
        guard t < text.endIndex, text[t] != UInt8(ascii: "/") else { return false }
        p += 1
        t += 1
      case UInt8(ascii: "["):
        guard t < text.endIndex else { return false }
        guard let (matched, next) = matchClass(pattern, p, text[t]) else {
          // No closing bracket: a literal '['.
          guard text[t] == c else { return false }
          p += 1
          t += 1
          continue
        }
        guard matched else { return false }
        p = next
        t += 1
      case UInt8(ascii: "\\") where p + 1 < pattern.endIndex:
        guard t < text.endIndex, text[t] == pattern[p + 1] else { return false }
        p += 2
        t += 1
      default:
        guard t < text.endIndex, text[t] == c else { return false }
        p += 1
        t += 1
      }
    }
    return t == text.endIndex
  }

  /// Matches `byte` against the class starting at `open` (a `[`); nil if the class is unclosed.
  static func matchClass(_ pattern: ArraySlice<UInt8>, _ open: Int, _ byte: UInt8) -> (Bool, Int)? {
    var i = open + 1
    var negate = false
    if i < pattern.endIndex && (pattern[i] == UInt8(ascii: "!") || pattern[i] == UInt8(ascii: "^")) {
      negate = true
      i += 1
    }
    var matched = false
    var first = true
    while i < pattern.endIndex {
      let c = pattern[i]
      if c == UInt8(ascii: "]") && !first { return (matched != negate, i + 1) }
      first = false
      if i + 2 < pattern.endIndex && pattern[i + 1] == UInt8(ascii: "-")
        && pattern[i + 2] != UInt8(ascii: "]")
      {
        if byte >= c && byte <= pattern[i + 2] { matched = true }
        i += 3
      } else {
        if byte == c { matched = true }
        i += 1
      }
    }
    return nil
  }
}
