/*
 * lanchat's words: every string of the chat page and of the login form, in
 * one table per language (English, Simplified Chinese). Loaded first, it
 * gives the other scripts one global, `I18n`:
 *
 *   I18n.t(key, {name: ...})  the string for `key` in the page's language,
 *                             with {name}-style holes filled in (text only:
 *                             whatever is filled in still goes on the page
 *                             through textContent, never as HTML).
 *   I18n.lang                 'en' or 'zh-CN': the browser's language, or
 *                             the one chosen in the page (localStorage).
 *   I18n.choose(lang)         remembers a choice and reloads the page in it.
 *   I18n.loginReason(text)    the server's reason on the login form, in
 *                             the page's language (it is sent in English).
 *   I18n.translatePage()      fills in the page's strings (below); each
 *                             page's own script calls it first thing.
 *
 * The HTML says which string goes where with attributes:
 *   data-i18n="key"             the element's text
 *   data-i18n-attr="attr:key,attr:key"   attributes (placeholder, title,
 *                               aria-label)
 * A key missing from a language falls back to English, then to the key
 * itself, so a forgotten translation shows up as English, never as a hole.
 * Nothing is loaded from the internet: the tables are this file.
 */
'use strict';

const I18n = (() => {
  const LANG_KEY = 'lanchat.lang';

  const STRINGS = {
    en: {
      // The login form (login.html).
      'login.title': 'Log in · lanchat',
      'login.lead': 'Chat with everyone on this network.',
      'login.name': 'Your name',
      'login.nameHint': '1 to 32 characters. Everyone here sees who is online.',
      'login.password': 'Password',
      'login.optional': '(optional)',
      'login.passwordHint': 'Give a password to keep this name for you (and to use it on another device).',
      'login.join': 'Join the chat',
      'login.kicked': 'The host removed you from the chat.',
      'login.released': 'The host released your name: it is free again, without its password and private messages.',
      'login.reason.empty': 'Please choose a name.',
      'login.reason.long': 'That name is too long: 32 characters at most.',
      'login.reason.control': 'A name cannot contain control or invisible characters.',
      'login.reason.combining': 'A name cannot start with a combining mark.',
      'login.reason.passwordLength': 'A password has 4 to 128 characters.',
      'login.reason.banned': 'This name is banned from the chat.',
      'login.reason.tooManyWrong': 'Too many wrong passwords for this name. Try again in a minute.',
      'login.reason.tooManySessions': 'Too many new sessions from your device. Try again in a minute.',
      'login.reason.inUse': 'That name (or one that looks the same, like Alice and alice) is in use right now. Choose another name, or log out there first.',
      'login.reason.wrongPassword': 'Wrong password for this name.',
      'login.reason.protected': 'This name is protected by a password. Enter it to log in here too, or choose another name.',
      'language': 'Language',

      // The header.
      'skip': 'Skip to the message box',
      'people.toggle': 'Conversations and people',
      'status.connecting': 'Connecting…',
      'status.connected': 'Connected',
      'status.polling': 'Connected · long polling',
      'status.reconnecting': 'Reconnecting…',
      'status.kicked': 'Disconnected by the host',
      'status.loggedOut': 'Logged out',
      'join.link': 'Show join code',
      'join.title': 'A QR code of this chat, for a projector',
      'me.title': 'You are logged in as this name',
      'me.label': 'Logged in as ',
      'host': 'host',
      'host.title': 'Connected with the host link',
      'password.button': 'Password',
      'password.buttonTitle': 'Set a password to keep your name',
      'settings.button': 'Settings',
      'logout': 'Log out',

      // The people column.
      'conversations': 'Conversations',
      'room': 'Everyone',
      'room.title': 'The room: everyone online reads it',
      'online': 'Online',
      'offline': 'Offline',
      'people.hint': 'Click a name to write privately.',
      'you.tag': 'you',
      'offline.tag': 'offline',
      'muted.tag': 'muted',
      'banned.tag': 'banned',
      'user.title': 'Write privately to {name}',
      'user.titleAway': 'Write privately to {name} (offline: gets it on return)',
      'unread': '{count} unread',
      'unread.mention': '{count} unread, with a mention of you',

      // The host panel.
      'host.controls': 'Host controls',
      'host.classMode': 'Class mode',
      'host.announce': 'Only the host writes to everyone',
      'host.private': 'Private messages between students',
      'host.uploads': 'File uploads',
      'host.slow': 'Slow mode',
      'host.slowOff': 'Off',
      'host.slowEvery': 'one message every {duration}',
      'host.clear': 'Clear history',
      'host.clearConfirm': 'Clear for everyone? Click again',
      'host.muted': 'Muted',
      'host.banned': 'Banned',
      'host.nobody': 'Nobody',
      'host.until': 'until {time}',
      'host.unmute': 'Unmute',
      'host.unmuteName': 'Unmute {name}',
      'host.unban': 'Unban',
      'host.unbanName': 'Unban {name}',
      'host.releaseLabel': 'Release a forgotten name',
      'host.release': 'Release',
      'host.releaseHint': 'Frees the name: its password and private messages are deleted.',
      'host.releaseSure': 'Sure? Click again',
      'host.actions': 'Host actions',
      'host.actionsFor': 'Host actions for {name}',
      'host.actionsMessage': 'Host actions for this message from {name}',
      'host.unmuteUntil': 'Unmute (muted until {time})',
      'host.muteFor': 'Mute for {minutes} min',
      'host.kick': 'Kick out of the chat',
      'host.kickConfirm': 'Kick {name}? Click again',
      'host.ban': 'Ban (kick, and no login with this name)',
      'host.banConfirm': 'Ban {name}? Click again',
      'host.releaseName': 'Release the name (forgets its password)',
      'host.releaseConfirm': 'Release {name}? Click again',
      'host.deleteMessage': 'Delete this message',
      'host.deleteConfirm': 'Delete it for everyone? Click again',

      // The timeline.
      'timeline': 'Messages',
      'jump': '↓ New messages',
      'you': 'You',
      'you.lower': 'you',
      'private.label': ' · private',
      'reply': 'Reply privately',
      'delete': 'Delete',
      'delete.armed': 'Delete?',
      'delete.title': 'Delete this message for everyone',
      'delete.armedTitle': 'Click again to delete it for everyone',
      'delete.busy': 'Deleting…',
      'mentions.you': ' (mentions you)',
      'joined': '{names} joined',
      'left': '{names} left',
      'names.two': '{first} and {last}',
      'names.many': '{first} and {count} others',
      'names.host': '{name} (host)',
      'conversation.online': '{name} is online',
      'conversation.offline': '{name} went offline: what you write waits for their return',
      'inbox.one': 'A private message arrived while you were away',
      'inbox.many': '{count} private messages arrived while you were away',
      'divider.new': 'New since your last visit',
      'divider.joined': 'You joined at {time}',
      'gap': 'You missed more messages than the server keeps; showing the latest.',
      'empty.title': 'No messages yet',
      'empty.room': 'Say hello: everyone online sees what you write here.',
      'empty.private': 'Only you and {name} see what you write here.',
      'today': 'Today',
      'yesterday': 'Yesterday',
      'typing.one': '{name} is typing…',
      'typing.two': '{first} and {second} are typing…',
      'typing.many': '{count} people are typing…',
      'announce.one': '{name}: {text}',
      'announce.elsewhere': 'New message from {name}, in another conversation',
      'announce.many': '{count} new messages',

      // The composer.
      'private.to': 'Private to',
      'private.away': ' (offline, gets it on return)',
      'private.cancel': 'Stop writing privately, back to everyone',
      'attach': 'Attach a file or photo',
      'camera': 'Take a photo',
      'message': 'Message',
      'placeholder.room': 'Message everyone',
      'placeholder.private': 'Private message to {name}',
      'send': 'Send',
      'composer.hint': 'Enter to send · Shift+Enter for a new line · @ to mention someone',
      'mention.list': 'People to mention',
      'notConnected': 'Not connected right now. Your message is kept; send it again once connected.',
      'notConnected.delete': 'Not connected right now. Delete it again once connected.',
      'notConnected.host': 'Not connected right now. Try again once connected.',

      // Errors from the server, by their code.
      'error.too_long': 'That message is too long: 4000 characters at most.',
      'error.empty': 'Type something first.',
      'error.rate_limited': 'You are sending too fast. Wait a moment and try again.',
      'error.unknown_user': 'Nobody has that name here.',
      'error.bad_request': 'The server did not understand that.',
      'error.not_found': 'That message is no longer there to delete.',
      'error.forbidden': 'You are not allowed to do that.',
      'error.muted': 'The host has muted you for now.',
      'error.announce_only': 'Only the host can write to everyone right now.',
      'error.slow_mode': 'Slow mode: wait a little before your next message.',
      'error.private_off': 'Private messages between students are off right now.',
      'error.unknown_file': 'That file is no longer on the server: attach it again.',
      'error.unreachable': 'Could not reach the server: that was not sent. Try again in a moment.',
      'error.other': 'The server refused that.',

      // The mode line and mode notices.
      'mode.hostLine': 'Class mode: {modes}. As the host, you are not held back.',
      'mode.announce': 'announce-only',
      'mode.slow': 'slow mode ({duration})',
      'mode.noPrivate': 'no private messages between students',
      'mode.noUploads': 'no uploads',
      'mode.mutedUntil': 'The host muted you until {time}.',
      'mode.hintHostPrivately': ' You can still write privately to the host.',
      'mode.hintHost': ' You can still write to the host.',
      'mode.announceOnly': 'Only the host can write to everyone right now.',
      'mode.slowWait': 'Slow mode: you can write again in {seconds} s.',
      'mode.slowEvery': 'Slow mode: one message every {duration}.',
      'mode.privateOff': 'Private messages between students are off right now.',
      'notice.announceOn': 'Announce-only: only the host writes to everyone now.',
      'notice.announceOff': 'Announce-only is over: everyone can write again.',
      'notice.slowOn': 'Slow mode: one message every {duration}.',
      'notice.slowOff': 'Slow mode is off.',
      'notice.privateOn': 'Private messages between students are allowed again.',
      'notice.privateOff': 'Private messages between students are off (writing to the host still works).',
      'notice.uploadsOn': 'File uploads are on again.',
      'notice.uploadsOff': 'File uploads are off.',
      'notice.youMuted': 'The host muted you until {time}.',
      'notice.youUnmuted': 'The host unmuted you: you can write again.',
      'notice.muted': '{name} is muted until {time}.',
      'notice.unmuted': '{name} is no longer muted.',
      'notice.banned': '{name} is banned.',
      'notice.unbanned': '{name} may log in again.',
      'notice.cleared': 'The host cleared the history.',
      'notice.passwordSet': 'Your password is set: the name {name} stays yours, and the password logs you in on another device.',
      'seconds': '{n} s',
      'minutes': '{n} min',

      // The password dialog.
      'password.title': 'Keep your name',
      'password.hint': 'With a password, this name stays yours while you are away, and you can use it on another device. If you forget it, the host can free the name.',
      'password.new': 'New password',
      'password.current': 'Current password',
      'password.currentOptional': '(only if you set one before)',
      'password.save': 'Save password',
      'password.loggedOut': 'You are no longer logged in. Reload the page to log in again.',
      'password.wrong': 'The current password is wrong. (If you never set one, leave it empty.)',
      'password.refused': 'The server refused it ({status}).',
      'password.unreachable': 'Could not reach the server. Try again in a moment.',
      'cancel': 'Cancel',
      'close': 'Close',

      // The settings dialog: language, sound, notifications.
      'settings.title': 'Settings',
      'sound': 'Sound',
      'sound.all': 'For every message',
      'sound.personal': 'For mentions and private messages',
      'sound.off': 'Off',
      'notify': 'System notifications',
      'notify.turnOn': 'Turn on notifications',
      'notify.on': 'On: mentions and private messages are shown by your system while this tab is hidden.',
      'notify.denied': 'Blocked: this browser was told not to show lanchat\'s notifications (change it in the site settings).',
      'notify.unsupported': 'This browser cannot show system notifications.',
      'notify.insecure': 'Browsers show system notifications only for secure pages (HTTPS, or this computer as localhost). This chat is plain HTTP on your network, so lanchat plays a sound instead, and counts new messages in the tab title.',
      'notify.private': 'Private message from {name}',
      'notify.mention': '{name} mentioned you',

      // Files and photos (files.js).
      'files.tooBig': 'That file is too big for this chat (the limit is set by the server).',
      'files.limit': 'Here it is {size}.',
      'files.off': 'File uploads are off right now: the host or the server turned them off.',
      'files.tooMany': 'You shared many files in a short time: wait a minute, then try again.',
      'files.loggedOut': 'You are no longer logged in. Reload the page to log in again.',
      'files.slow': 'The upload was too slow and the server gave up. Try again, or try a smaller file.',
      'files.lost': 'The upload did not get through: the connection to the server broke. Try again.',
      'files.refused': 'The server refused the file ({status}).',
      'files.dropPrivate': 'Drop to send it privately to {name}',
      'files.drop': 'Drop to share it',
      'files.onlyOne': 'One file per message: only this one of the {count}.',
      'files.preparing': 'Preparing the photo…',
      'files.uploading': 'Uploading…',
      'files.uploadingSend': 'Uploading… it is sent when done',
      'files.ready': '{size} · ready to send',
      'files.uploadingName': 'Uploading {name}',
      'files.remove': 'Remove {name}',
      'files.removeTitle': 'Do not send this file',
      'files.open': '{name}: open the full picture',
      'files.download': 'Download',
      'files.downloadName': 'Download {name}',
      'files.byte': '1 byte',
      'files.bytes': '{n} bytes',
    },

    'zh-CN': {
      'login.title': '登录 · lanchat',
      'login.lead': '和这个网络上的每个人聊天。',
      'login.name': '你的名字',
      'login.nameHint': '1 到 32 个字符。这里的每个人都能看到谁在线。',
      'login.password': '密码',
      'login.optional': '（可选）',
      'login.passwordHint': '设置密码可以保留这个名字（也可以在另一台设备上使用）。',
      'login.join': '加入聊天',
      'login.kicked': '主持人把你移出了聊天。',
      'login.released': '主持人释放了你的名字：它又可以被使用了，密码和私信都已删除。',
      'login.reason.empty': '请选择一个名字。',
      'login.reason.long': '名字太长了：最多 32 个字符。',
      'login.reason.control': '名字不能包含控制字符或不可见字符。',
      'login.reason.combining': '名字不能以组合符号开头。',
      'login.reason.passwordLength': '密码为 4 到 128 个字符。',
      'login.reason.banned': '这个名字已被禁止进入聊天。',
      'login.reason.tooManyWrong': '这个名字的密码错误次数太多。请一分钟后再试。',
      'login.reason.tooManySessions': '你的设备新建的会话太多。请一分钟后再试。',
      'login.reason.inUse': '这个名字（或看起来一样的名字，比如 Alice 和 alice）正在被使用。请换一个名字，或先在那边退出。',
      'login.reason.wrongPassword': '这个名字的密码不对。',
      'login.reason.protected': '这个名字有密码保护。输入密码即可在这里登录，或换一个名字。',
      'language': '语言',

      'skip': '跳到输入框',
      'people.toggle': '会话和在线的人',
      'status.connecting': '正在连接…',
      'status.connected': '已连接',
      'status.polling': '已连接 · 长轮询',
      'status.reconnecting': '正在重新连接…',
      'status.kicked': '已被主持人断开',
      'status.loggedOut': '已退出',
      'join.link': '显示加入二维码',
      'join.title': '本聊天的二维码，用于投影',
      'me.title': '你正以这个名字登录',
      'me.label': '登录身份：',
      'host': '主持人',
      'host.title': '通过主持人链接连接',
      'password.button': '密码',
      'password.buttonTitle': '设置密码以保留你的名字',
      'settings.button': '设置',
      'logout': '退出',

      'conversations': '会话',
      'room': '所有人',
      'room.title': '聊天室：在线的每个人都能看到',
      'online': '在线',
      'offline': '离线',
      'people.hint': '点击名字即可私聊。',
      'you.tag': '你',
      'offline.tag': '离线',
      'muted.tag': '已禁言',
      'banned.tag': '已封禁',
      'user.title': '私聊 {name}',
      'user.titleAway': '私聊 {name}（离线：回来后会收到）',
      'unread': '{count} 条未读',
      'unread.mention': '{count} 条未读，其中有人提到你',

      'host.controls': '主持人控制',
      'host.classMode': '课堂模式',
      'host.announce': '只有主持人可以对所有人发言',
      'host.private': '学生之间的私信',
      'host.uploads': '文件上传',
      'host.slow': '慢速模式',
      'host.slowOff': '关闭',
      'host.slowEvery': '每 {duration} 一条消息',
      'host.clear': '清空历史',
      'host.clearConfirm': '为所有人清空？再点一次',
      'host.muted': '已禁言',
      'host.banned': '已封禁',
      'host.nobody': '无',
      'host.until': '直到 {time}',
      'host.unmute': '解除禁言',
      'host.unmuteName': '解除 {name} 的禁言',
      'host.unban': '解封',
      'host.unbanName': '解封 {name}',
      'host.releaseLabel': '释放一个被遗忘的名字',
      'host.release': '释放',
      'host.releaseHint': '释放名字：它的密码和私信都会被删除。',
      'host.releaseSure': '确定？再点一次',
      'host.actions': '主持人操作',
      'host.actionsFor': '对 {name} 的主持人操作',
      'host.actionsMessage': '对 {name} 这条消息的主持人操作',
      'host.unmuteUntil': '解除禁言（禁言到 {time}）',
      'host.muteFor': '禁言 {minutes} 分钟',
      'host.kick': '踢出聊天',
      'host.kickConfirm': '踢出 {name}？再点一次',
      'host.ban': '封禁（踢出，并禁止用此名字登录）',
      'host.banConfirm': '封禁 {name}？再点一次',
      'host.releaseName': '释放名字（清除它的密码）',
      'host.releaseConfirm': '释放 {name}？再点一次',
      'host.deleteMessage': '删除这条消息',
      'host.deleteConfirm': '为所有人删除？再点一次',

      'timeline': '消息',
      'jump': '↓ 新消息',
      'you': '你',
      'you.lower': '你',
      'private.label': ' · 私信',
      'reply': '私信回复',
      'delete': '删除',
      'delete.armed': '删除？',
      'delete.title': '为所有人删除这条消息',
      'delete.armedTitle': '再点一次即为所有人删除',
      'delete.busy': '正在删除…',
      'mentions.you': '（提到了你）',
      'joined': '{names} 加入了',
      'left': '{names} 离开了',
      'names.two': '{first} 和 {last}',
      'names.many': '{first} 等另外 {count} 人',
      'names.host': '{name}（主持人）',
      'conversation.online': '{name} 上线了',
      'conversation.offline': '{name} 下线了：你写的内容会等对方回来',
      'inbox.one': '你离开期间收到了一条私信',
      'inbox.many': '你离开期间收到了 {count} 条私信',
      'divider.new': '上次离开后的新消息',
      'divider.joined': '你在 {time} 加入',
      'gap': '你错过的消息比服务器保存的还多；这里显示最新的。',
      'empty.title': '还没有消息',
      'empty.room': '打个招呼吧：在线的每个人都能看到你在这里写的内容。',
      'empty.private': '只有你和 {name} 能看到这里的内容。',
      'today': '今天',
      'yesterday': '昨天',
      'typing.one': '{name} 正在输入…',
      'typing.two': '{first} 和 {second} 正在输入…',
      'typing.many': '{count} 个人正在输入…',
      'announce.one': '{name}：{text}',
      'announce.elsewhere': '{name} 发来新消息，在另一个会话中',
      'announce.many': '{count} 条新消息',

      'private.to': '私信给',
      'private.away': '（离线，回来后会收到）',
      'private.cancel': '不再私聊，回到所有人',
      'attach': '附加文件或照片',
      'camera': '拍照',
      'message': '消息',
      'placeholder.room': '发给所有人',
      'placeholder.private': '私信给 {name}',
      'send': '发送',
      'composer.hint': 'Enter 发送 · Shift+Enter 换行 · @ 提到某人',
      'mention.list': '可以提到的人',
      'notConnected': '现在没有连接。你的消息还在，连接后再发送。',
      'notConnected.delete': '现在没有连接。连接后再删除。',
      'notConnected.host': '现在没有连接。连接后再试。',

      'error.too_long': '消息太长了：最多 4000 个字符。',
      'error.empty': '请先输入内容。',
      'error.rate_limited': '你发得太快了。稍等一下再试。',
      'error.unknown_user': '这里没有人用这个名字。',
      'error.bad_request': '服务器没有理解这个请求。',
      'error.not_found': '这条消息已经不在了，无法删除。',
      'error.forbidden': '你没有权限这样做。',
      'error.muted': '主持人暂时禁言了你。',
      'error.announce_only': '现在只有主持人可以对所有人发言。',
      'error.slow_mode': '慢速模式：请稍等再发下一条。',
      'error.private_off': '学生之间的私信现在已关闭。',
      'error.unknown_file': '这个文件已不在服务器上：请重新附加。',
      'error.unreachable': '无法连接服务器：没有发送出去。请稍后再试。',
      'error.other': '服务器拒绝了这个请求。',

      'mode.hostLine': '课堂模式：{modes}。你是主持人，不受限制。',
      'mode.announce': '仅主持人发言',
      'mode.slow': '慢速模式（{duration}）',
      'mode.noPrivate': '学生之间不能私信',
      'mode.noUploads': '不能上传文件',
      'mode.mutedUntil': '主持人禁言了你，直到 {time}。',
      'mode.hintHostPrivately': '你仍然可以私信主持人。',
      'mode.hintHost': '你仍然可以写给主持人。',
      'mode.announceOnly': '现在只有主持人可以对所有人发言。',
      'mode.slowWait': '慢速模式：{seconds} 秒后可以再发言。',
      'mode.slowEvery': '慢速模式：每 {duration} 一条消息。',
      'mode.privateOff': '学生之间的私信现在已关闭。',
      'notice.announceOn': '仅主持人发言：现在只有主持人可以对所有人发言。',
      'notice.announceOff': '仅主持人发言已结束：每个人都可以发言了。',
      'notice.slowOn': '慢速模式：每 {duration} 一条消息。',
      'notice.slowOff': '慢速模式已关闭。',
      'notice.privateOn': '学生之间的私信又可以用了。',
      'notice.privateOff': '学生之间的私信已关闭（仍然可以写给主持人）。',
      'notice.uploadsOn': '文件上传已重新开启。',
      'notice.uploadsOff': '文件上传已关闭。',
      'notice.youMuted': '主持人禁言了你，直到 {time}。',
      'notice.youUnmuted': '主持人解除了你的禁言：你可以再发言了。',
      'notice.muted': '{name} 被禁言，直到 {time}。',
      'notice.unmuted': '{name} 已解除禁言。',
      'notice.banned': '{name} 已被封禁。',
      'notice.unbanned': '{name} 可以再次登录了。',
      'notice.cleared': '主持人清空了历史。',
      'notice.passwordSet': '密码已设置：名字 {name} 会一直属于你，用这个密码可以在另一台设备上登录。',
      'seconds': '{n} 秒',
      'minutes': '{n} 分钟',

      'password.title': '保留你的名字',
      'password.hint': '有了密码，你离开时这个名字仍然属于你，也可以在另一台设备上使用。如果忘记了，主持人可以释放这个名字。',
      'password.new': '新密码',
      'password.current': '当前密码',
      'password.currentOptional': '（仅当你之前设置过）',
      'password.save': '保存密码',
      'password.loggedOut': '你已不再登录。请刷新页面重新登录。',
      'password.wrong': '当前密码不对。（如果你从没设置过，请留空。）',
      'password.refused': '服务器拒绝了（{status}）。',
      'password.unreachable': '无法连接服务器。请稍后再试。',
      'cancel': '取消',
      'close': '关闭',

      'settings.title': '设置',
      'sound': '声音',
      'sound.all': '每条消息都响',
      'sound.personal': '有人提到我和私信时响',
      'sound.off': '关闭',
      'notify': '系统通知',
      'notify.turnOn': '开启通知',
      'notify.on': '已开启：这个标签页隐藏时，提到你的消息和私信会由系统显示。',
      'notify.denied': '已阻止：这个浏览器被设置为不显示 lanchat 的通知（可在网站设置中更改）。',
      'notify.unsupported': '这个浏览器不能显示系统通知。',
      'notify.insecure': '浏览器只为安全页面（HTTPS，或本机的 localhost）显示系统通知。这个聊天在你的网络上使用普通 HTTP，所以 lanchat 会改为播放提示音，并在标签页标题中显示新消息数。',
      'notify.private': '{name} 发来私信',
      'notify.mention': '{name} 提到了你',

      'files.tooBig': '这个文件对本聊天来说太大了（上限由服务器设定）。',
      'files.limit': '这里的上限是 {size}。',
      'files.off': '文件上传现在已关闭：是主持人或服务器关闭的。',
      'files.tooMany': '你短时间内分享了很多文件：请等一分钟再试。',
      'files.loggedOut': '你已不再登录。请刷新页面重新登录。',
      'files.slow': '上传太慢，服务器放弃了。请重试，或换一个小一点的文件。',
      'files.lost': '上传没有成功：与服务器的连接断了。请重试。',
      'files.refused': '服务器拒绝了这个文件（{status}）。',
      'files.dropPrivate': '松开即可私信发送给 {name}',
      'files.drop': '松开即可分享',
      'files.onlyOne': '每条消息一个文件：{count} 个中只附加了这一个。',
      'files.preparing': '正在处理照片…',
      'files.uploading': '正在上传…',
      'files.uploadingSend': '正在上传…完成后自动发送',
      'files.ready': '{size} · 可以发送',
      'files.uploadingName': '正在上传 {name}',
      'files.remove': '移除 {name}',
      'files.removeTitle': '不发送这个文件',
      'files.open': '{name}：打开原图',
      'files.download': '下载',
      'files.downloadName': '下载 {name}',
      'files.byte': '1 字节',
      'files.bytes': '{n} 字节',
    },
  };

  // The server's login reasons come in English; these patterns find which
  // one it is, to show it in the page's language. An unknown reason is
  // shown as the server wrote it.
  const LOGIN_REASONS = [
    [/^Please choose a name/, 'login.reason.empty'],
    [/too long/i, 'login.reason.long'],
    [/control|invisible|format character/i, 'login.reason.control'],
    [/combining mark/, 'login.reason.combining'],
    [/^A password|password must|4 to 128/i, 'login.reason.passwordLength'],
    [/is banned/, 'login.reason.banned'],
    [/Too many wrong passwords/, 'login.reason.tooManyWrong'],
    [/Too many new sessions/, 'login.reason.tooManySessions'],
    [/is in use right now/, 'login.reason.inUse'],
    [/^Wrong password/, 'login.reason.wrongPassword'],
    [/protected by a password/, 'login.reason.protected'],
  ];

  const LANGUAGES = [['en', 'English'], ['zh-CN', '简体中文']];

  // The language chosen in the page, else the first of the browser's
  // languages that we have (any Chinese gets Simplified Chinese), else English.
  function pick() {
    try {
      const chosen = localStorage.getItem(LANG_KEY);
      if (chosen && STRINGS[chosen]) return chosen;
    } catch {
      // Storage disabled: follow the browser.
    }
    for (const language of navigator.languages || [navigator.language]) {
      const lower = String(language).toLowerCase();
      if (lower.startsWith('zh')) return 'zh-CN';
      if (lower.startsWith('en')) return 'en';
    }
    return 'en';
  }

  const lang = pick();

  function t(key, values = {}) {
    const template = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
    return template.replace(/\{(\w+)\}/g, (hole, name) => (name in values ? String(values[name]) : hole));
  }

  // Fills in the data-i18n and data-i18n-attr of the page.
  function translatePage() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll('[data-i18n-attr]')) {
      for (const pair of node.dataset.i18nAttr.split(',')) {
        const [attribute, key] = pair.split(':');
        node.setAttribute(attribute.trim(), t(key.trim()));
      }
    }
  }

  // A <select> of the languages, showing the current one; a change reloads
  // the page in the one chosen (simpler than redrawing what is on screen).
  function fillLanguageSelect(select) {
    for (const [value, label] of LANGUAGES) select.append(new Option(label, value, false, value === lang));
    select.addEventListener('change', () => choose(select.value));
  }

  function choose(language) {
    try {
      localStorage.setItem(LANG_KEY, language);
    } catch {
      // Storage disabled: the choice lasts for this load only.
    }
    location.reload();
  }

  function loginReason(text) {
    const found = LOGIN_REASONS.find(([pattern]) => pattern.test(text));
    return found ? t(found[1]) : text;
  }

  return { lang, t, translatePage, choose, fillLanguageSelect, loginReason };
})();
