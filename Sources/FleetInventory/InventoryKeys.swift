/// The keys each part of the inventory accepts, and the words and characters it refuses.
enum InventoryKeys {
  static let top = ["version", "secrets_file", "defaults", "groups", "sources", "backups"]
  static let defaults = ["ssh", "inotify", "watch", "rsync"]
  static let group = ["ssh", "inotify", "watch", "rsync"]
  static let source = ["address", "groups", "ssh", "inotify", "watch", "directories"]
  static let backup = ["address", "groups", "ssh", "rsync", "daemons"]
  static let directory = [
    "path", "to", "excludes", "batch_delay_ms", "workers", "full_sync_interval", "health_port",
    "max_delete", "mass_change", "backend",
  ]
  static let daemon = ["port", "uid", "gid", "max_connections", "keep_versions", "modules"]
  static let module = ["path", "secret_file", "keep_versions"]
  static let ssh = [
    "user", "port", "identity", "passphrase_file", "known_hosts", "host_key_policy", "connect_timeout",
  ]
  static let inotify = ["max_user_watches", "max_user_instances", "max_queued_events"]
  static let watch = [
    "batch_delay_ms", "workers", "excludes", "full_sync_interval", "max_delete", "mass_change", "backend",
  ]
  static let rsync = ["uid", "gid", "max_connections", "keep_versions"]
  static let secretLike: Set<String> = ["secret", "secrets", "password", "passphrase", "passwd"]
  static let pathForbidden: Set<Unicode.Scalar> = [
    ";", "&", "|", "$", "`", "'", "\"", "<", ">", "(", ")", "{", "}", "[", "]", "*", "?", "!", "\\", "#",
  ]
}
