package fcmtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ServiceAccountProjectID is the project_id of the service-account files
// written by [Server.WriteServiceAccount].
const ServiceAccountProjectID = "fcmtest-project"

// GrantTypeJWTBearer is the OAuth2 grant type service accounts use (RFC 7523).
const GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// TokenRequest is one request to the /token endpoint.
type TokenRequest struct {
	// GrantType is the grant_type form value.
	GrantType string
	// KeyID is the "kid" of the assertion's JWT header.
	KeyID string
	// Claims is the payload of the assertion JWT (iss, scope, aud, iat, exp),
	// nil when the assertion could not be decoded.
	Claims map[string]any
	// AccessToken is the token the server answered with, "" if it refused.
	AccessToken string
	// Received is when the request arrived.
	Received time.Time
}

// TokenRequests returns a copy of the token requests received since the start
// or the last [Server.Reset], in arrival order.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.tokenRequests...)
}

type publicKey struct {
	id  string
	key *rsa.PublicKey
}

// ServiceAccountJSON generates a 2048-bit RSA key and returns a
// service-account credentials file for it (type service_account, the given
// project_id, private_key, client_email, and token_uri tokenURL). The server
// remembers the public key: its /token endpoint then grants an access token
// to any JWT assertion signed with it, and refuses assertions signed with
// keys it does not know.
func (s *Server) ServiceAccountJSON(tokenURL, projectID string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode service-account key: %w", err)
	}
	var id [20]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("generate key id: %w", err)
	}
	kid := hex.EncodeToString(id[:])
	email := "fcmtest@" + projectID + ".iam.gserviceaccount.com"
	data, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  projectID,
		"private_key_id":              kid,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "100000000000000000000",
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   tokenURL,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
		"client_x509_cert_url":        "https://www.googleapis.com/robot/v1/metadata/x509/" + email,
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode service account: %w", err)
	}
	s.mu.Lock()
	s.keys = append(s.keys, publicKey{id: kid, key: &key.PublicKey})
	s.mu.Unlock()
	return data, nil
}

// WriteServiceAccount writes a service-account file made by
// [Server.ServiceAccountJSON] into dir, with project_id
// [ServiceAccountProjectID] and token_uri pointing at this started server's
// /token, and returns its path. It fails t on any error.
func (s *Server) WriteServiceAccount(t testing.TB, dir string) string {
	t.Helper()
	base := s.URL()
	if base == "" {
		t.Fatal("fcmtest: WriteServiceAccount needs a started server")
	}
	data, err := s.ServiceAccountJSON(base+"/token", ServiceAccountProjectID)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "Method not allowed; use POST.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Bad request body.")
		return
	}
	tr := TokenRequest{GrantType: r.PostForm.Get("grant_type"), Received: time.Now()}
	header, claims, signed, sig, decodeErr := decodeJWT(r.PostForm.Get("assertion"))
	tr.Claims = claims
	if kid, ok := header["kid"].(string); ok {
		tr.KeyID = kid
	}

	status, code, description := http.StatusOK, "", ""
	s.mu.Lock()
	switch {
	case tr.GrantType != GrantTypeJWTBearer:
		status, code, description = http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+tr.GrantType
	case decodeErr != nil:
		status, code, description = http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+decodeErr.Error()
	case header["alg"] != "RS256" || !s.verifiesLocked(signed, sig):
		status, code, description = http.StatusBadRequest, "invalid_grant", "Invalid JWT Signature."
	default:
		tr.AccessToken = fmt.Sprintf("test-token-%d", len(s.issued)+1)
		s.issued[tr.AccessToken] = true
	}
	s.tokenRequests = append(s.tokenRequests, tr)
	s.mu.Unlock()

	if status != http.StatusOK {
		writeOAuthError(w, status, code, description)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tr.AccessToken,
		"token_type":   "Bearer",
		"expires_in":   3600,
	})
}

func (s *Server) verifiesLocked(signed, sig []byte) bool {
	sum := sha256.Sum256(signed)
	for _, k := range s.keys {
		if rsa.VerifyPKCS1v15(k.key, crypto.SHA256, sum[:], sig) == nil {
			return true
		}
	}
	return false
}

// decodeJWT splits a compact JWS into its decoded header and claims, the
// signed part and the signature. It does not verify anything.
func decodeJWT(token string) (header, claims map[string]any, signed, sig []byte, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, nil, nil, fmt.Errorf("want 3 dot-separated parts, got %d", len(parts))
	}
	dec := func(s string, v any) error {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, v)
	}
	if err := dec(parts[0], &header); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("header: %w", err)
	}
	if err := dec(parts[1], &claims); err != nil {
		return header, nil, nil, nil, fmt.Errorf("claims: %w", err)
	}
	if sig, err = base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return header, claims, nil, nil, fmt.Errorf("signature: %w", err)
	}
	return header, claims, []byte(parts[0] + "." + parts[1]), sig, nil
}

func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}
