/// "Did you mean ...?" for a misspelled name: the one policy for every unknown key, flag or name.
public enum Suggestion {
  /// The candidate `word` was most likely meant as, or nil when none is close.
  ///
  /// Case and the `-`/`_` spelling do not count. A candidate is close when at most
  /// max(2, length / 3) letters are added, removed or changed; failing that, when one begins
  /// with the other (at least 3 letters long). The closest candidate wins, the earlier on a tie.
  public static func closest(to word: String, among candidates: [String]) -> String? {
    let target = normalized(word)
    let scored = candidates.map { (candidate: $0, distance: editDistance(target, normalized($0))) }
    if let best = scored.filter({ $0.distance <= max(2, word.count / 3) }).min(by: {
      $0.distance < $1.distance
    }) {
      return best.candidate
    }
    guard target.count >= 3 else { return nil }
    return candidates.first {
      let other = normalized($0)
      return other.hasPrefix(target) || target.hasPrefix(other)
    }
  }

  /// `did you mean \`CANDIDATE\`?` for the closest candidate, or nil.
  public static func didYouMean(_ word: String, among candidates: [String]) -> String? {
    closest(to: word, among: candidates).map { "did you mean `\($0)`?" }
  }

  static func normalized(_ text: String) -> String {
    String(text.lowercased().map { $0 == "_" ? "-" : $0 })
  }

  /// Levenshtein distance over characters.
  static func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var row = Array(0...b.count)
    for i in 1...a.count {
      var previous = row[0]
      row[0] = i
      for j in 1...b.count {
        let current = row[j]
        row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
        previous = current
      }
    }
    return row[b.count]
  }
}
