import FleetCore

/// The output of a remote script in `@@name` sections: fleetsync's scripts print `@@name` on a line
/// of its own before each block, and the controller reads the blocks back by name.
///
/// The facts script and the status probe both speak it; section names must not contain a newline.
struct SectionedOutput {
  private var sections: [String: [Substring]] = [:]

  /// The shell line that starts section `name`.
  static func marker(_ name: String) throws -> String { "echo " + (try ShellQuote.quote("@@" + name)) }

  /// Splits `text` at its markers. Lines before the first marker belong to no section; a name
  /// printed twice continues its section.
  init(_ text: String) {
    var current = ""
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("@@") {
        current = String(line.dropFirst(2))
        sections[current, default: []] += []
      } else if !current.isEmpty {
        sections[current, default: []].append(line)
      }
    }
  }

  /// The lines of section `name`, nil when the script did not print it.
  subscript(_ name: String) -> [Substring]? { sections[name] }
}
