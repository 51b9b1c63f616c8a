/// Where a watcher's change events come from: the `backend` setting of the agent and the inventory.
public enum EventBackend: String, CaseIterable, Sendable {
  /// fanotify when the kernel and privileges allow, inotify otherwise.
  case auto
  /// One fanotify mark on the source's filesystem (Linux 5.9 or later, CAP_SYS_ADMIN): no watch
  /// per directory, no watch limit, nothing to set up on a big tree.
  case fanotify
  /// One inotify watch per directory (`fs.inotify.max_user_watches`), set up by walking the tree.
  case inotify

  /// The values, for messages: `auto, fanotify or inotify`.
  public static var choices: String { "auto, fanotify or inotify" }
}
