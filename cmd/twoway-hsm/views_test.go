package main

// The JSON documents of keys --json, as a script reads them.

type testKey struct {
	Ref        string   `json:"ref"`
	Backend    string   `json:"backend"`
	KEM        string   `json:"kem"`
	KEMID      uint16   `json:"kem_id"`
	KEMName    string   `json:"kem_name"`
	PublicKey  string   `json:"public_key"`
	Usable     bool     `json:"usable"`
	Problem    string   `json:"problem"`
	Name       string   `json:"name"`
	Attributes []string `json:"attributes"`
	PKCS11     *struct {
		Token      string `json:"token"`
		Serial     string `json:"serial"`
		ModulePath string `json:"module_path"`
		ID         string `json:"id"`
		Label      string `json:"label"`
		KeyType    string `json:"key_type"`
		Attributes struct {
			Sensitive, Extractable, Derive, Token, Private, Local bool
		} `json:"attributes"`
	} `json:"pkcs11"`
	TPM2 *struct {
		Transport string `json:"transport"`
		File      string `json:"file"`
		Handle    string `json:"handle"`
		HandleRef string `json:"handle_ref"`
	} `json:"tpm2"`
	Soft *struct {
		File string `json:"file"`
	} `json:"soft"`
}

type testList struct {
	Backend string    `json:"backend"`
	Title   string    `json:"title"`
	Keys    []testKey `json:"keys"`
	PKCS11  *struct {
		Label      string `json:"label"`
		Serial     string `json:"serial"`
		ModulePath string `json:"module_path"`
	} `json:"pkcs11"`
	TPM2 *struct {
		Transport string `json:"transport"`
		Dir       string `json:"dir"`
	} `json:"tpm2"`
	Soft *struct {
		Dir string `json:"dir"`
	} `json:"soft"`
}
