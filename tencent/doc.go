// Package tencent holds Tencent Cloud Chat's protocol as followpush speaks
// it, in one place:
//
//   - the webhook's signature ([Sign], [VerifySign]): lowercase hex of
//     SHA-256 of the callback token followed by RequestTime, compared in
//     constant time, within a replay window;
//   - callbacks ([Parse]): strict parsing of the follow and unfollow
//     callbacks, every other command recognised and left alone;
//   - the answer every callback gets ([Answer], [OK], [Fail]);
//   - the admin UserSig of the REST API ([UserSig], [Signer]), computed
//     from the app's secret key with Tencent's TLSSigAPIv2 algorithm.
//
// docs/tencent.md describes the protocol in prose.
package tencent
