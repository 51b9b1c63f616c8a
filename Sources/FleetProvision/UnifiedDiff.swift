/// Unified diffs of small text files (configs), for `fleetsync plan`.
enum UnifiedDiff {
  /// A unified diff from `old` to `new` with 3 lines of context; empty when equal.
  static func make(old: String, new: String, path: String) -> String {
    let a = lines(old)
    let b = lines(new)
    let ops = edits(a, b)
    guard ops.contains(where: { $0.kind != " " }) else { return "" }
    var out = "--- \(path)\n+++ \(path)\n"
    // Group edits into hunks with 3 lines of context.
    var index = 0
    while index < ops.count {
      guard let start = ops[index...].firstIndex(where: { $0.kind != " " }) else { break }
      var end = start
      var scan = start
      while scan < ops.count {
        if ops[scan].kind != " " {
          end = scan
          scan += 1
        } else if scan - end <= 6 {
          scan += 1
        } else {
          break
        }
      }
      let lo = max(index, start - 3)
      let hi = min(ops.count - 1, end + 3)
      let slice = ops[lo...hi]
      let oldCount = slice.filter { $0.kind != "+" }.count
      let newCount = slice.filter { $0.kind != "-" }.count
      // As diff(1): an empty range starts at the line before it (0 for a created file).
      let oldStart = (slice.first?.oldLine ?? 0) + (oldCount == 0 ? 0 : 1)
      let newStart = (slice.first?.newLine ?? 0) + (newCount == 0 ? 0 : 1)
      out += "@@ -\(oldStart),\(oldCount) +\(newStart),\(newCount) @@\n"
      for op in slice { out += "\(op.kind)\(op.text)\n" }
      index = hi + 1
    }
    return out
  }

  /// The lines of a text; a final newline ends the last line rather than starting an empty one.
  static func lines(_ text: String) -> [String] {
    var parts = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    if parts.last == "" { parts.removeLast() }
    return parts
  }

  struct Op {
    var kind: Character
    var text: String
    var oldLine: Int
    var newLine: Int
  }

  /// Line edits by longest common subsequence (configs are small).
  static func edits(_ a: [String], _ b: [String]) -> [Op] {
    let n = a.count
    let m = b.count
    var lcs = Array(repeating: Array(repeating: 0, count: m + 1), count: n + 1)
    for i in stride(from: n - 1, through: 0, by: -1) {
      for j in stride(from: m - 1, through: 0, by: -1) {
        lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
      }
    }
    var ops: [Op] = []
    var i = 0
    var j = 0
    while i < n || j < m {
      if i < n, j < m, a[i] == b[j] {
        ops.append(Op(kind: " ", text: a[i], oldLine: i, newLine: j))
        i += 1
        j += 1
      } else if i < n, j == m || lcs[i + 1][j] >= lcs[i][j + 1] {
        ops.append(Op(kind: "-", text: a[i], oldLine: i, newLine: j))
        i += 1
      } else {
        ops.append(Op(kind: "+", text: b[j], oldLine: i, newLine: j))
        j += 1
      }
    }
    return ops
  }
}
