// Package pushtext holds the visible texts of the pushes: Go text/template
// titles and bodies per locale ([Texts]), for a single follow and for a
// summary push, with built-in English, Chinese and Japanese
// ([BuiltinTexts]) that PUSH_TITLE, PUSH_BODY and PUSH_TEMPLATES_FILE
// override ([NewTemplates], [NewLocalizedTemplates]).
//
// Every template is checked when it is made: parsed, then tried on a follow
// and on summaries of one follower, of two and of many, so that a template
// that would fail on some pushes stops the program at start. A device's
// locale picks the best configured one ([Templates.Locale]: the tag, then
// the tag with its last subtags dropped, else [DefaultLocale]); should a
// template still fail on real data, [Templates.FollowOrBuiltin] and
// [Templates.SummaryOrBuiltin] fall back to the built-in text so that the
// push is not lost.
package pushtext
