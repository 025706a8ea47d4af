// Package tencent holds Tencent Cloud Chat's protocol as followpush speaks
// it, in one place. For now that is the admin UserSig, the credential of
// Tencent's REST API: [UserSig] computes one from the app's secret key with
// Tencent's TLSSigAPIv2 algorithm, and a [Signer] keeps one per app fresh.
// (The webhook's Sign, callback parsing and the REST client still live in
// webhook and notifier.)
package tencent
