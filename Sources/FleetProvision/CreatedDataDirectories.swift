import FleetCore

/// The node's own record of the backup data directories fleetsync created, so that
/// `down --delete-data` deletes those and never one that existed before `up`, whatever the
/// manifest says.
///
/// `up` creates a module's directory only when nothing is at its path, and then appends
/// `DEVICE:INODE:BIRTH PATH` for it to ``record`` (the birth time, to the nanosecond, tells a
/// directory from a later one that got the freed inode number; `-` where the filesystem keeps none) (outside every module, so no sync `--delete` and no `-X`
/// can remove or copy the mark; and apart from the manifest, so an edited or lost manifest cannot
/// forge or erase it). `down --delete-data` deletes a listed data directory only when the directory
/// now at that path is the very one recorded (same device, inode and birth time): one that existed before, one
/// recreated or replaced since, a filesystem mounted there, or a symlink is kept and reported. A
/// directory found already there is never recorded, even by a later `up`. `down` drops the record:
/// what it leaves behind is the operator's from then on.
enum CreatedDataDirectories {
  /// The record on every node.
  static let record = "/var/lib/fleetsync/created-data-directories"

  /// The shell functions the create and delete lines call, for the record at `record`.
  static func functions(record: String = record) throws -> String {
    """
    R=\(try ShellQuote.quote(record))
    fleetsync_create_data_dir() {
      if [ -e "$1" ] || [ -L "$1" ]; then return 0; fi
      mkdir -p -- "$1" && chown -- "$2" "$1" && chmod -- "$3" "$1" || return 1
      mkdir -p -- "${R%/*}" && printf '%s %s\\n' "$(stat -c '%d:%i:%w' -- "$1")" "$1" >>"$R"
    }
    fleetsync_delete_data_dir() {
      if [ -L "$1" ] || [ ! -d "$1" ]; then
        if [ -e "$1" ] || [ -L "$1" ]; then echo @@kept; echo "$1"; fi
        return 0
      fi
      if [ -f "$R" ] && grep -qxF -- "$(stat -c '%d:%i:%w' -- "$1") $1" "$R"; then
        rm -rf --one-file-system -- "$1" || fleetsync_delete_failed=1
      else
        echo @@kept; echo "$1"
      fi
    }

    """
  }

  /// The line that creates the data directory `dir` (and records it) when nothing is at its path.
  static func create(_ dir: DesiredDirectory) throws -> String {
    try checked(dir.path)
    let owner = try ShellQuote.quote(dir.owner ?? "root:root")
    return
      "fleetsync_create_data_dir \(try ShellQuote.quote(dir.path)) \(owner) \(String(dir.mode, radix: 8))\n"
  }

  /// The line that deletes the data directory at `path` if the record says fleetsync created it.
  static func delete(_ path: String) throws -> String {
    try checked(path)
    return "fleetsync_delete_data_dir \(try ShellQuote.quote(path))\n"
  }

  /// The line that forgets the record (the end of `down`).
  static func forget(record: String = record) throws -> String {
    "rm -f -- \(try ShellQuote.quote(record))\n"
  }

  /// The last line of a script that deleted data directories: fails it when a deletion failed (its
  /// `rm` said why on stderr), after every other line has run.
  static let verdict = "[ -z \"${fleetsync_delete_failed:-}\" ]\n"

  /// The data directories a delete script kept, from its output.
  static func kept(in output: String) -> [String] {
    (SectionedOutput(output)["kept"] ?? []).map(String.init).filter { !$0.isEmpty }
  }

  /// A record line holds one path: a path with a line break cannot be recorded.
  private static func checked(_ path: String) throws {
    if path.contains(where: \.isNewline) {
      throw FleetError(
        .invalidInput, "a data directory path cannot contain a line break: \(path.debugDescription)")
    }
  }
}
