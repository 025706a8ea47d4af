package tencent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// CallbackCommand values this service acts on. Every other command is
// accepted (when its body is a well-formed JSON object) and ignored.
const (
	// CommandFollowAdd is sent after a user followed others ("After a User Is
	// Followed"): From_Account, FollowList[].To_Account, EventTime.
	CommandFollowAdd = "Follow.CallbackAfterFollowAdd"
	// CommandFollowDelete is sent after a user unfollowed others ("After a
	// User Is Unfollowed"): From_Account, To_Account (array of strings),
	// EventTime.
	CommandFollowDelete = "Follow.CallbackAfterFollowDelete"
)

// DefaultMaxFollows is the longest FollowList or To_Account array [Parse]
// accepts when [Limits.MaxFollows] is zero.
const DefaultMaxFollows = 1000

// MaxNesting is how deeply arrays and objects may nest in a callback body;
// the top-level object counts as one level. Deeper bodies are malformed.
const MaxNesting = 32

// ErrMalformed is wrapped by every error [Parse] returns: the body (or the
// command) is not an acceptable callback and the HTTP layer answers 400.
var ErrMalformed = errors.New("malformed callback")

// Limits bounds what [Parse] accepts. The zero value gives the defaults.
type Limits struct {
	// MaxFollows is the longest FollowList (follow) or To_Account (unfollow)
	// array accepted; a longer one is malformed. Zero or negative means
	// [DefaultMaxFollows].
	MaxFollows int
}

// Callback is a parsed, validated callback body.
type Callback struct {
	// Command is the effective CallbackCommand: the query's, or the body's
	// when the query has none.
	Command string
	// From is From_Account, the follower (follow commands only).
	From string
	// To holds the distinct valid followees in list order, with self-follows,
	// invalid UserIDs and repeats removed (follow commands only). It is nil
	// when nothing is left.
	To []string
	// EventTime is when the (un)follow happened, in milliseconds since the
	// Unix epoch; always > 0 for follow commands.
	EventTime int64
	// Skipped counts the list entries dropped: invalid UserIDs (missing,
	// null, empty or longer than MaxUserIDBytes), self-follows and
	// repeats. len(To)+Skipped is the length of the list.
	Skipped int
	// Invalid counts, of Skipped, the entries dropped as invalid UserIDs.
	Invalid int
}

// Parse parses and validates the body of a Tencent Cloud Chat callback.
// queryCommand is the CallbackCommand query parameter ("" when absent).
//
// Every body must be valid UTF-8 holding exactly one JSON object (surrounding
// whitespace allowed) with no duplicate keys at any depth and at most
// [MaxNesting] levels of nesting. The command is queryCommand, or the body's
// CallbackCommand when queryCommand is ""; a body CallbackCommand that is not
// a string (null counts as absent) or differs from queryCommand, or no command
// at all, is malformed. For commands other than [CommandFollowAdd] and
// [CommandFollowDelete] Parse checks nothing more and returns a Callback
// holding only Command.
//
// For the follow commands From_Account must be a valid UserID
// ([ValidateUserID]), EventTime a positive JSON integer that fits int64,
// and the list (FollowList of objects with a To_Account string for
// [CommandFollowAdd], To_Account array of strings for [CommandFollowDelete])
// non-empty and at most lim.MaxFollows long. Unknown fields are accepted
// anywhere; null counts as missing. Inside the list, a missing, null, empty
// or over-long To_Account is skipped and counted, not fatal; one of any other
// type is malformed, and so is a FollowList entry that is not an object or a
// To_Account element that is not a string.
//
// Every error wraps [ErrMalformed] and says briefly what is wrong.
func Parse(queryCommand string, body []byte, lim Limits) (Callback, error) {
	if !utf8.Valid(body) {
		return Callback{}, malformed("body is not valid UTF-8")
	}
	s := scanner{data: body, keys: make([][]byte, 0, smallObject)}
	s.skipSpace()
	if s.pos == len(body) {
		return Callback{}, malformed("empty body")
	}
	if body[s.pos] != '{' {
		return Callback{}, malformed("body is not a JSON object")
	}
	var f topFields
	if err := s.object(1, &f); err != nil {
		return Callback{}, err
	}
	s.skipSpace()
	if s.pos != len(body) {
		return Callback{}, malformed("data after the JSON object at offset %d", s.pos)
	}

	cmd, err := s.command(queryCommand, f.command)
	if err != nil {
		return Callback{}, err
	}
	if cmd != CommandFollowAdd && cmd != CommandFollowDelete {
		return Callback{Command: cmd}, nil
	}

	from, err := s.fromAccount(f.from)
	if err != nil {
		return Callback{}, err
	}
	maxFollows := lim.MaxFollows
	if maxFollows <= 0 {
		maxFollows = DefaultMaxFollows
	}
	c := collector{from: from}
	if cmd == CommandFollowAdd {
		err = s.followList(f.followList, maxFollows, &c)
	} else {
		err = s.toAccounts(f.toAccount, maxFollows, &c)
	}
	if err != nil {
		return Callback{}, err
	}
	t, err := s.eventTime(f.eventTime)
	if err != nil {
		return Callback{}, err
	}
	return Callback{
		Command:   cmd,
		From:      from,
		To:        c.followees(),
		EventTime: t,
		Skipped:   c.skipped,
		Invalid:   c.invalid,
	}, nil
}

// malformed returns an error wrapping ErrMalformed.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// quote quotes b for an error message, cut to a few dozen bytes.
func quote(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

// span locates a top-level value in the body: data[start:end]. n is the
// element count when the value is an array. The zero span means absent (no
// value can start at offset 0, where the top-level object begins).
type span struct{ start, end, n int }

func (sp span) present() bool { return sp.end > 0 }

// topFields records where the top-level fields Parse interprets are.
type topFields struct {
	command, from, eventTime, followList, toAccount span
}

func (f *topFields) record(key []byte, sp span) {
	switch string(key) {
	case "CallbackCommand":
		f.command = sp
	case "From_Account":
		f.from = sp
	case "EventTime":
		f.eventTime = sp
	case "FollowList":
		f.followList = sp
	case "To_Account":
		f.toAccount = sp
	}
}

// scanner walks a JSON text in one pass, checking the syntax (as
// encoding/json does), duplicate keys and nesting. It assumes the text is
// valid UTF-8. Its methods leave pos just after what they read.
type scanner struct {
	data []byte
	pos  int
	// keys holds the keys of the objects being read, outermost first.
	keys [][]byte
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// syntaxError describes the byte at pos as unexpected.
func (s *scanner) syntaxError() error {
	if s.pos >= len(s.data) {
		return malformed("unexpected end of JSON input")
	}
	r, _ := utf8.DecodeRune(s.data[s.pos:])
	return malformed("invalid character %q at offset %d", r, s.pos)
}

// value reads one value (after optional whitespace) inside a container at
// the given depth.
func (s *scanner) value(depth int) error {
	s.skipSpace()
	if s.pos >= len(s.data) {
		return s.syntaxError()
	}
	switch c := s.data[s.pos]; c {
	case '{':
		return s.object(depth+1, nil)
	case '[':
		_, err := s.array(depth + 1)
		return err
	case '"':
		_, _, err := s.str()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		if c == '-' || isDigit(c) {
			return s.number()
		}
		return s.syntaxError()
	}
}

// smallObject is how many keys an object may have before duplicates are
// looked up in a map rather than by comparing with every earlier key.
const smallObject = 16

// object reads an object starting at pos ('{') at the given depth. When top
// is not nil, the values of the fields Parse needs are recorded in it.
func (s *scanner) object(depth int, top *topFields) error {
	if depth > MaxNesting {
		return malformed("nesting deeper than %d levels at offset %d", MaxNesting, s.pos)
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return nil
	}
	base := len(s.keys)
	err := s.members(depth, top, base)
	s.keys = s.keys[:base]
	return err
}

// members reads the members of an object after its '{', and the '}'. The
// keys read so far are s.keys[base:] while there are few, then in a map.
func (s *scanner) members(depth int, top *topFields, base int) error {
	var many map[string]struct{}
	for {
		key, err := s.key()
		if err != nil {
			return err
		}
		if s.duplicate(key, base, &many) {
			return malformed("duplicate key %s", quote(key))
		}
		s.skipSpace()
		sp := span{start: s.pos}
		if top != nil && s.pos < len(s.data) && s.data[s.pos] == '[' {
			sp.n, err = s.array(depth + 1)
		} else {
			err = s.value(depth)
		}
		if err != nil {
			return err
		}
		if top != nil {
			sp.end = s.pos
			top.record(key, sp)
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.syntaxError()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.syntaxError()
		}
	}
}

// duplicate adds key to the keys of the object whose keys start at
// s.keys[base] (or are in *many) and reports whether it was there already.
func (s *scanner) duplicate(key []byte, base int, many *map[string]struct{}) bool {
	if *many == nil {
		for _, have := range s.keys[base:] {
			if string(have) == string(key) {
				return true
			}
		}
		if len(s.keys)-base < smallObject {
			s.keys = append(s.keys, key)
			return false
		}
		*many = make(map[string]struct{}, 2*smallObject)
		for _, have := range s.keys[base:] {
			(*many)[string(have)] = struct{}{}
		}
	}
	if _, ok := (*many)[string(key)]; ok {
		return true
	}
	(*many)[string(key)] = struct{}{}
	return false
}

// key reads an object key and the colon after it (with the whitespace
// around both) and returns the key, unescaped.
func (s *scanner) key() ([]byte, error) {
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, s.syntaxError()
	}
	key, err := s.strValue()
	if err != nil {
		return nil, err
	}
	s.skipSpace()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return nil, s.syntaxError()
	}
	s.pos++
	return key, nil
}

// array reads an array starting at pos ('[') at the given depth and returns
// how many elements it has.
func (s *scanner) array(depth int) (int, error) {
	if depth > MaxNesting {
		return 0, malformed("nesting deeper than %d levels at offset %d", MaxNesting, s.pos)
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return 0, nil
	}
	for n := 1; ; n++ {
		if err := s.value(depth); err != nil {
			return 0, err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return 0, s.syntaxError()
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return n, nil
		default:
			return 0, s.syntaxError()
		}
	}
}

// str reads a string starting at pos ('"') and returns its raw contents
// (between the quotes) and whether they hold escapes.
func (s *scanner) str() (raw []byte, escaped bool, err error) {
	s.pos++
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], escaped, nil
		case c == '\\':
			escaped = true
			s.pos++
			if s.pos >= len(s.data) {
				return nil, false, s.syntaxError()
			}
			switch s.data[s.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				s.pos++
				for range 4 {
					if s.pos >= len(s.data) || !isHex(s.data[s.pos]) {
						return nil, false, s.syntaxError()
					}
					s.pos++
				}
			default:
				return nil, false, s.syntaxError()
			}
		case c < 0x20:
			return nil, false, s.syntaxError()
		default:
			s.pos++
		}
	}
	return nil, false, s.syntaxError()
}

// strValue reads a string starting at pos ('"') and returns its value:
// the raw bytes when it has no escapes, else a decoded copy.
func (s *scanner) strValue() ([]byte, error) {
	start := s.pos
	raw, escaped, err := s.str()
	if err != nil || !escaped {
		return raw, err
	}
	// Escapes are rare: let encoding/json decode them (an unpaired surrogate
	// becomes U+FFFD). It cannot fail on what str accepted.
	var v string
	if err := json.Unmarshal(s.data[start:s.pos], &v); err != nil {
		return nil, malformed("string at offset %d: %v", start, err)
	}
	return []byte(v), nil
}

// number reads a number starting at pos, with the grammar of RFC 8259.
func (s *scanner) number() error {
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos >= len(s.data) {
		return s.syntaxError()
	}
	switch c := s.data[s.pos]; {
	case c == '0':
		s.pos++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return s.syntaxError()
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		if s.pos >= len(s.data) || !isDigit(s.data[s.pos]) {
			return s.syntaxError()
		}
		s.digits()
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		if s.pos >= len(s.data) || !isDigit(s.data[s.pos]) {
			return s.syntaxError()
		}
		s.digits()
	}
	return nil
}

func (s *scanner) digits() {
	for s.pos < len(s.data) && isDigit(s.data[s.pos]) {
		s.pos++
	}
}

func (s *scanner) literal(word string) error {
	for i := range len(word) {
		if s.pos >= len(s.data) || s.data[s.pos] != word[i] {
			return s.syntaxError()
		}
		s.pos++
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// The methods below interpret values the first pass has already checked, so
// they only look at types, not at syntax.

// kind names the JSON type of the value at sp.
func (s *scanner) kind(sp span) string {
	switch c := s.data[sp.start]; {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	default:
		return "number"
	}
}

// stringAt returns the string starting at pos.
func (s *scanner) stringAt(pos int) (string, error) {
	s.pos = pos
	v, err := s.strValue()
	return string(v), err
}

// command works out the effective command from the query's and the body's.
func (s *scanner) command(query string, sp span) (string, error) {
	if sp.present() {
		switch k := s.kind(sp); k {
		case "null":
			// As if absent.
		case "string":
			s.pos = sp.start
			body, err := s.strValue()
			switch {
			case err != nil:
				return "", err
			case query == "":
				query = string(body)
			case string(body) != query:
				return "", malformed("CallbackCommand %s in the body differs from %s in the query",
					quote(body), quote([]byte(query)))
			}
		default:
			return "", malformed("CallbackCommand: got %s, want string", k)
		}
	}
	if query == "" {
		return "", malformed("no CallbackCommand")
	}
	return query, nil
}

func (s *scanner) fromAccount(sp span) (string, error) {
	if !sp.present() || s.kind(sp) == "null" {
		return "", malformed("missing From_Account")
	}
	if k := s.kind(sp); k != "string" {
		return "", malformed("From_Account: got %s, want string", k)
	}
	from, err := s.stringAt(sp.start)
	switch {
	case err != nil:
		return "", err
	case from == "":
		return "", malformed("empty From_Account")
	case len(from) > MaxUserIDBytes:
		return "", malformed("From_Account longer than %d bytes", MaxUserIDBytes)
	case ValidateUserID(from) != nil:
		return "", malformed("From_Account is not valid UTF-8")
	}
	return from, nil
}

func (s *scanner) eventTime(sp span) (int64, error) {
	if !sp.present() || s.kind(sp) == "null" {
		return 0, malformed("missing EventTime")
	}
	if k := s.kind(sp); k != "number" {
		return 0, malformed("EventTime: got %s, want integer", k)
	}
	raw := s.data[sp.start:sp.end]
	for _, c := range raw {
		if c == '.' || c == 'e' || c == 'E' {
			return 0, malformed("EventTime %s is not an integer", quote(raw))
		}
	}
	if raw[0] == '-' {
		return 0, malformed("EventTime %s is not positive", raw)
	}
	t, err := strconv.ParseInt(string(raw), 10, 64)
	switch {
	case err != nil:
		return 0, malformed("EventTime %s is out of range", quote(raw))
	case t == 0:
		return 0, malformed("EventTime is zero")
	}
	return t, nil
}

// listCheck checks the list at sp (named name) is a non-empty array no
// longer than maxLen.
func (s *scanner) listCheck(name string, sp span, maxLen int) error {
	if !sp.present() || s.kind(sp) == "null" {
		return malformed("missing %s", name)
	}
	if k := s.kind(sp); k != "array" {
		return malformed("%s: got %s, want array", name, k)
	}
	if sp.n == 0 {
		return malformed("empty %s", name)
	}
	if sp.n > maxLen {
		return malformed("%s has %d entries, more than %d", name, sp.n, maxLen)
	}
	return nil
}

// list reads the array at sp, named name, into c: a non-empty array of
// at most maxLen entries ([scanner.listCheck]), each read by entry, which
// starts at the entry and returns the followee it names (found false: it
// names none).
func (s *scanner) list(name string, sp span, maxLen int, c *collector, entry func(i int) (to []byte, found bool, err error)) error {
	if err := s.listCheck(name, sp, maxLen); err != nil {
		return err
	}
	c.init(sp)
	s.pos = sp.start + 1
	for i := 0; ; i++ {
		s.skipSpace()
		to, found, err := entry(i)
		if err != nil {
			return err
		}
		c.add(to, found)
		s.skipSpace()
		s.pos++ // ',' or ']'
		if s.data[s.pos-1] == ']' {
			return nil
		}
	}
}

// followList reads FollowList, an array of {"To_Account": "..."} objects.
func (s *scanner) followList(sp span, maxLen int, c *collector) error {
	return s.list("FollowList", sp, maxLen, c, s.followEntry)
}

// followEntry reads FollowList[i], an object whose To_Account (a string,
// or null or absent: no followee) is the followee.
func (s *scanner) followEntry(i int) (to []byte, found bool, err error) {
	if s.data[s.pos] != '{' {
		return nil, false, malformed("FollowList[%d]: got %s, want object", i, s.kind(span{start: s.pos}))
	}
	s.pos++
	s.skipSpace()
	if s.data[s.pos] == '}' {
		s.pos++
		return nil, false, nil
	}
	for {
		key, err := s.key()
		if err != nil {
			return nil, false, err
		}
		s.skipSpace()
		if string(key) == "To_Account" {
			switch k := s.kind(span{start: s.pos}); k {
			case "string":
				if to, err = s.strValue(); err != nil {
					return nil, false, err
				}
				found = true
			case "null":
				s.pos += len("null")
			default:
				return nil, false, malformed("FollowList[%d].To_Account: got %s, want string", i, k)
			}
		} else if err := s.value(2); err != nil {
			return nil, false, err
		}
		s.skipSpace()
		s.pos++ // ',' or '}'
		if s.data[s.pos-1] == '}' {
			return to, found, nil
		}
	}
}

// toAccounts reads To_Account, an array of strings.
func (s *scanner) toAccounts(sp span, maxLen int, c *collector) error {
	return s.list("To_Account", sp, maxLen, c, func(i int) ([]byte, bool, error) {
		if k := s.kind(span{start: s.pos}); k != "string" {
			return nil, false, malformed("To_Account[%d]: got %s, want string", i, k)
		}
		to, err := s.strValue()
		return to, err == nil, err
	})
}

// smallList is how many followees are compared one by one for repeats
// before a map is used.
const smallList = 32

// collector gathers the distinct valid followees of a list. To allocate
// little, it keeps them back to back in buf, each preceded by its length (one
// byte: a UserID has at most MaxUserIDBytes), and makes them strings
// sharing one allocation at the end.
type collector struct {
	from             string
	buf              []byte
	n                int                 // followees in buf
	seen             map[string]struct{} // the followees, once there are many
	skipped, invalid int
}

// init sizes buf for the list at sp. The list's JSON text is at least as long
// as buf can get: each kept string's quotes make room for its length byte.
func (c *collector) init(sp span) {
	c.buf = make([]byte, 0, min(sp.end-sp.start, sp.n*(1+MaxUserIDBytes)))
}

// add takes one list entry: the value of its To_Account string, or found
// false when it had none (or null).
func (c *collector) add(raw []byte, found bool) {
	switch {
	case !found || len(raw) == 0 || len(raw) > MaxUserIDBytes:
		c.skipped++
		c.invalid++
		return
	case string(raw) == c.from:
		c.skipped++
		return
	}
	if c.seen == nil {
		for i := 0; i < len(c.buf); i += 1 + int(c.buf[i]) {
			if string(c.buf[i+1:i+1+int(c.buf[i])]) == string(raw) {
				c.skipped++
				return
			}
		}
		if c.n == smallList {
			c.seen = make(map[string]struct{}, 2*smallList)
			for i := 0; i < len(c.buf); i += 1 + int(c.buf[i]) {
				c.seen[string(c.buf[i+1:i+1+int(c.buf[i])])] = struct{}{}
			}
		}
	}
	if c.seen != nil {
		if _, ok := c.seen[string(raw)]; ok {
			c.skipped++
			return
		}
		c.seen[string(raw)] = struct{}{}
	}
	c.buf = append(c.buf, byte(len(raw)))
	c.buf = append(c.buf, raw...)
	c.n++
}

// followees returns the followees kept, or nil if none.
func (c *collector) followees() []string {
	if c.n == 0 {
		return nil
	}
	all := string(c.buf)
	to := make([]string, 0, c.n)
	for i := 0; i < len(all); i += 1 + int(all[i]) {
		to = append(to, all[i+1:i+1+int(all[i])])
	}
	return to
}
